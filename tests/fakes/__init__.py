"""Fakes of the external systems eaglectl drives: SGLang's internals (sglang_internals.py), its `ServerArgs` flag
parser (server_args.py), its server process (sglang_server.py, run as a script), and tensor-parallel ranks on
threads (ranks.py)."""

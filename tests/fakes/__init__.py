"""Fakes of the external systems eaglectl drives: SGLang's internals (sglang_internals.py), its `ServerArgs` flag
parser (server_args.py), its server process (sglang_server.py for serve, sglang_bench_server.py for bench, run as
scripts; what they share is in server_common.py), and tensor-parallel ranks on threads (ranks.py)."""

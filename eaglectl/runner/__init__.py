"""The target side of EAGLE-3 training: the runner contract, the HF reference runner and `probe-target`.

Import the submodules you need (`eaglectl.runner.contract` is light; `hf` needs the `hf` extra at use, and the
`sglang` package, `from eaglectl.runner.sglang import SGLangTargetRunner`, the `sglang` extra).
"""

"""The SGLang differential oracle: SGLang's own draft model class and load_weights run on a corpus of heads,
compared with eaglectl's loader replay (tests/test_oracle_sglang.py; scripts/oracle/*)."""

#!/usr/bin/env bash
# Runs the SGLang differential oracle (tests/test_oracle_sglang.py) with the environment scripts/oracle/setup.sh
# built: SGLang's own draft model class and load_weights on every corpus head, per release, compared with
# eaglectl's replay. Extra arguments go to pytest (e.g. -k four-aux). EAGLECTL_ORACLE_TABLE=FILE also writes the
# agreement table and every harness record as JSON; EAGLECTL_ORACLE_CORPUS=DIR keeps the corpus there.
set -euo pipefail
cd "$(dirname "$0")/../.."
HOME_DIR=${EAGLECTL_ORACLE_HOME:-$HOME/.cache/eaglectl-oracle}
if [ -z "${EAGLECTL_ORACLE_RELEASES:-}" ]; then
  [ -f "$HOME_DIR/env.sh" ] || { echo "no $HOME_DIR/env.sh: run scripts/oracle/setup.sh first" >&2; exit 2; }
  # shellcheck disable=SC1091
  source "$HOME_DIR/env.sh"
fi
PYTHON=${PYTHON:-python}
[ -x .venv/bin/python ] && [ "$PYTHON" = python ] && PYTHON=.venv/bin/python
status=0
"$PYTHON" -m pytest -m oracle tests/test_oracle_sglang.py -p no:cacheprovider -q "$@" || status=$?
if [ -n "${EAGLECTL_ORACLE_TABLE:-}" ] && [ -f "$EAGLECTL_ORACLE_TABLE" ]; then
  "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["table"])' "$EAGLECTL_ORACLE_TABLE"
fi
exit $status

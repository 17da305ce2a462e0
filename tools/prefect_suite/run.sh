#!/usr/bin/env bash
# Run Prefect's own test files, unchanged, against procflow through an import shim.
#
#   tools/prefect_suite/run.sh PREFECT_CHECKOUT [test files ...]
#
# PREFECT_CHECKOUT is a checkout of PrefectHQ/prefect at a 3.8 tag (its tests/ is used; its
# src/ is not imported). The shim maps `prefect.X` to `procflow.X` and stubs what procflow
# lacks (`missing.txt` lists it); Prefect's conftest (server fixtures) is set aside, so tests
# that need a server fail with "fixture ... not found". Needs: anyio, pytest-asyncio,
# pytest-timeout, regex, pydantic (not procflow's test extra: this is a measuring tool).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "$1" && pwd)"; shift
files=("${@:-tests/test_tasks.py tests/test_flows.py tests/test_states.py tests/test_log_prints.py}")
[ -f "$checkout/tests/conftest_prefect.py.orig" ] || mv "$checkout/tests/conftest.py" "$checkout/tests/conftest_prefect.py.orig"
cat > "$checkout/tests/conftest.py" <<PY
import os, sys, tempfile
os.environ["PROCFLOW_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="prefect-suite-results-")  # as Prefect's own conftest: a fresh store per session
os.environ["PROCFLOW_END_SUMMARY"] = "0"  # thousands of flow runs: no closing summary at the session's exit
sys.path.insert(0, "$here")
import prefect_shim  # noqa: F401,E402
PY
cat > "$checkout/pytest.ini" <<'INI'
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
timeout = 60
markers =
    service(arg): a service integration test
    enable_api_log_handler: uses the API log handler
    clear_db: clears the database
    windows: Windows only
    unix: Unix only
INI
cd "$checkout"
export SHIM_MISSING="$here/missing.txt"
# shellcheck disable=SC2068
PYTHONPATH="$(cd "$here/../.." && pwd)" python -m pytest -q -p no:cacheprovider --timeout 20 ${files[@]}

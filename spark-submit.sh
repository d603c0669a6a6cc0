#!/usr/bin/env bash
# spark-submit.sh <job> [--conf FILE] [--date YYYY-MM-DD] [--set key=value ...] [--master URL] [-- spark-submit options]
# Runs jobs/<job>.py on Spark: local[*] by default, or the cluster named by --master / $SPARK_MASTER.
# Relative paths (--conf, --output, --set paths.*=..., and paths in the config) resolve against the
# directory the command is run from, as with `mvke-submit` and `python -m analyst.query`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${MVKE_PYTHON:-$here/.venv/bin/python}
if [ ! -x "$python" ]; then
  echo "spark-submit.sh: $python not found; run 'make install' first" >&2
  exit 2
fi
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$python}
export PYSPARK_DRIVER_PYTHON=${PYSPARK_DRIVER_PYTHON:-$python}
export PATH="$(dirname "$python"):$PATH"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -P -m core.submit "$@"  # -P: a core/ folder in the caller's directory must not shadow ours

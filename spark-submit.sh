#!/usr/bin/env bash
# spark-submit.sh <job> [--conf FILE] [--date YYYY-MM-DD] [--set key=value ...] [--master URL] [-- spark-submit options]
# Runs jobs/<job>.py on Spark: local[*] by default, or the cluster named by --master / $SPARK_MASTER.
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
cd "$here"
exec "$python" -m core.submit "$@"

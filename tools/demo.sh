#!/usr/bin/env bash
# make demo: synthetic logs, then three consecutive nights end to end on local Spark.
set -euo pipefail
cd "$(dirname "$0")/.."
conf=${1:-conf/local.yaml}
py=${VENV:-.venv}/bin/python  # make demo VENV=... installs there
export MVKE_PYTHON=${MVKE_PYTHON:-$(cd "$(dirname "$py")" && pwd)/python}  # for spark-submit.sh
start=$("$py" -c "from core.config import load_config; c = load_config('$conf').generate; print(c.start_date)")
days=$("$py" -c "from core.config import load_config; print(load_config('$conf').generate.days)")
night() { "$py" -c "import datetime as d; print(d.date.fromisoformat('$start') + d.timedelta(days=$1))"; }

echo "== generating synthetic logs ($conf)"
./spark-submit.sh generate --conf "$conf"
for offset in $((days - 2)) $((days - 1)) $days; do
  date=$(night "$offset")
  echo "== night $date"
  ./spark-submit.sh nightly --conf "$conf" --date "$date"
done
report=$("$py" -c "from core.config import load_config; print(load_config('$conf').paths.reports_root)")/$date/report.md
echo "== run report: $report"
cat "$report"

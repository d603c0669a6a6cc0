"""Feature-job throughput: events/s for one day's features, and a single-node reference.

    .venv/bin/python bench/features_throughput.py                       # 1M and 10M events
    .venv/bin/python bench/features_throughput.py --sizes 1000000 --repeats 3

For each size: synthetic raw tables (numpy-generated, skewed: log-normal user activity,
Zipf item and tag popularity; events spread over the 30-day window of the run date)
written once as Parquet, then, taking turns within each repetition:
- `spark job`: the whole feature job for one date (`jobs.features.run`: contract checks,
  quarantine classification, vocabulary, fields, user_features, tags, samples and
  quarantine written to Delta);
- `spark agg`: only the user_features behaviour fields and the samples of D-1, with the
  same `features` transforms, written as Parquet by Spark;
- `duckdb agg`: that same aggregation in DuckDB SQL over the same Parquet files, written
  as Parquet (the single-node reference), with as many threads as Spark has cores.
Prints one Markdown table (median seconds, events/s, ratios); docs/performance.md keeps
the figures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Config, FeaturesConf, Paths, SparkConf  # noqa: E402

DATE = dt.date(2026, 11, 30)
WINDOW_DAYS = 30
ITEMS, TAGS, CATEGORIES = 50_000, 1_000, 20
CTR, CVR = 0.05, 0.10
EVENTS_PER_USER = 20
DAY_US = 86_400 * 1_000_000


def generate(root: Path, events: int, seed: int = 7) -> None:
    """Raw tables under root/raw: events (8 files), items, tags, users."""
    rng = np.random.default_rng(seed)
    raw = root / "raw"
    users = max(events // EVENTS_PER_USER, 1)
    user_ids = pa.array([f"u{i:08d}" for i in range(users)])
    item_ids = pa.array([f"i{i:06d}" for i in range(ITEMS)])
    tag_ids = [f"t{i:05d}" for i in range(TAGS)]

    tag_pop = 1.0 / np.arange(1, TAGS + 1) ** 1.1
    n_tags = rng.integers(1, 4, ITEMS)
    item_tags = [list(rng.choice(TAGS, k, replace=False, p=tag_pop / tag_pop.sum())) for k in n_tags]
    _write(raw / "items", pa.table({"item_id": item_ids,
                                    "tag_ids": pa.array([[tag_ids[t] for t in ts] for ts in item_tags])}))
    _write(raw / "tags", pa.table({
        "tag_id": tag_ids, "tag_name": [f"tag {t}" for t in tag_ids],
        "category": [f"c{i % CATEGORIES:02d}" if i % 37 else None for i in range(TAGS)]}))
    listed = rng.random(users) < 0.8
    _write(raw / "users", pa.table({
        "user_id": user_ids.filter(pa.array(listed)),
        "gender": rng.choice(np.array(["f", "m", "x"], dtype=object), listed.sum()),
        "age": rng.integers(18, 80, listed.sum()),
        "city": rng.choice(np.array([f"city{i}" for i in range(200)], dtype=object), listed.sum()),
    }))

    impressions = int(events / (1 + CTR + CTR * CVR))
    activity = rng.lognormal(0, 1.2, users)
    user = rng.choice(users, impressions, p=activity / activity.sum()).astype(np.int32)
    item_pop = 1.0 / np.arange(1, ITEMS + 1) ** 1.05
    item = rng.choice(ITEMS, impressions, p=item_pop / item_pop.sum()).astype(np.int32)
    start_us = (DATE - dt.timedelta(days=WINDOW_DAYS) - dt.date(1970, 1, 1)).days * DAY_US
    time_us = start_us + rng.integers(0, WINDOW_DAYS * DAY_US - 2 * 3_600_000_000, impressions)
    clicked = np.flatnonzero(rng.random(impressions) < CTR)
    click_us = time_us[clicked] + rng.integers(1_000_000, 600_000_000, len(clicked))
    converted = clicked[rng.random(len(clicked)) < CVR]
    conversion_us = time_us[converted] + rng.integers(600_000_000, 3_600_000_000, len(converted))
    kinds = pa.array(["impression", "click", "conversion"])
    columns = {
        "user": np.concatenate([user, user[clicked], user[converted]]),
        "item": np.concatenate([item, item[clicked], item[converted]]),
        "kind": np.repeat(np.arange(3, dtype=np.int32), [impressions, len(clicked), len(converted)]),
        "time": np.concatenate([time_us, click_us, conversion_us]),
    }
    order = rng.permutation(len(columns["user"]))
    for part, rows in enumerate(np.array_split(order, 8)):
        table = pa.table({
            "user_id": pa.DictionaryArray.from_arrays(pa.array(columns["user"][rows]), user_ids).dictionary_decode(),
            "item_id": pa.DictionaryArray.from_arrays(pa.array(columns["item"][rows]), item_ids).dictionary_decode(),
            "event_type": pa.DictionaryArray.from_arrays(pa.array(columns["kind"][rows]), kinds).dictionary_decode(),
            "event_time": pa.array(columns["time"][rows], pa.timestamp("us", tz="UTC")),
        })
        _write(raw / "events", table, name=f"part-{part}.parquet")


def _write(folder: Path, table: pa.Table, name: str = "part-0.parquet") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name)


def spark_job(spark, root: Path) -> None:
    from jobs.features import run

    shutil.rmtree(root / "warehouse", ignore_errors=True)
    config = Config(paths=Paths(raw=str(root / "raw"), warehouse=str(root / "warehouse"), models=str(root / "m")),
                    features=FeaturesConf(window_days=WINDOW_DAYS))
    run(spark, config, [DATE], run_id="bench", as_of=DATE)


def spark_aggregation(spark, root: Path) -> None:
    """Behaviour fields of user_features for DATE and samples of DATE - 1, written as Parquet."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from features.behaviour import window_activity, window_entries
    from features.samples import label_samples
    from features.schema import behaviour_field
    from features.tags import item_field_values, item_tags
    from features.users import user_snapshots

    conf = FeaturesConf(window_days=WINDOW_DAYS)
    fields = sorted([behaviour_field(name, conf) for name in conf.behaviour_fields], key=lambda f: f.name)
    raw = root / "raw"
    start = DATE - dt.timedelta(days=WINDOW_DAYS)
    events = (spark.read.parquet(str(raw / "events"))
              .where((F.col("event_time") >= F.lit(start).cast("timestamp"))
                     & (F.col("event_time") < F.lit(DATE).cast("timestamp")))
              .withColumn("day", F.to_date("event_time"))
              .repartition("user_id"))  # as the job's classified events
    tags = spark.read.parquet(str(raw / "tags"))
    first = Window.unboundedPreceding, Window.currentRow
    categories = tags.where(F.col("category").isNotNull()).select("category").distinct().select(
        "category", (F.row_number().over(Window.orderBy("category").rowsBetween(*first)) + 1).alias("category_id"))
    catalogue = tags.join(categories, on="category", how="left").select(
        "tag_id", (F.row_number().over(Window.orderBy("tag_id").rowsBetween(*first)) + 1).cast("int").alias("tag_index"),
        F.coalesce(F.col("category_id"), F.lit(0)).cast("int").alias("category_id"))
    tag_rows = item_tags(spark.read.parquet(str(raw / "items")), catalogue=catalogue).cache()
    window = {"dates": [DATE], "window_days": WINDOW_DAYS}
    snapshots = user_snapshots(
        spark.createDataFrame([], "user_id string"), activity=window_activity(events, **window),
        entries=window_entries(events, item_values=item_field_values(tag_rows, fields=fields),
                               half_life_days=conf.decay_half_life_days, **window),
        dates=[DATE], fields=fields, max_len=conf.max_multi_len)
    out = root / "spark_out"
    snapshots.write.mode("overwrite").parquet(str(out / "user_features"))
    label_samples(events, item_tag_rows=tag_rows, label_days=[DATE - dt.timedelta(days=1)]) \
        .write.mode("overwrite").parquet(str(out / "samples"))
    tag_rows.unpersist()


def duckdb_aggregation(root: Path, threads: int) -> None:
    """The same aggregation in DuckDB SQL, written as Parquet."""
    import duckdb

    conf = FeaturesConf(window_days=WINDOW_DAYS)
    raw, out = root / "raw", root / "duckdb_out"
    out.mkdir(exist_ok=True)
    start = DATE - dt.timedelta(days=WINDOW_DAYS)

    def bucket(expr: str, edges) -> str:
        return f"CASE WHEN ({expr}) IS NULL THEN 0 ELSE 2 + " + " + ".join(
            f"CAST(({expr}) >= {float(e)} AS INTEGER)" for e in edges) + " END"

    def lists(field: str) -> str:
        return (f"LEFT JOIN lists {field} ON {field}.user_id = a.user_id AND {field}.field = '{field}'")

    h, k = conf.decay_half_life_days, conf.max_multi_len
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""
        CREATE TEMP VIEW ev AS SELECT user_id, item_id, event_type, event_time
        FROM read_parquet('{raw}/events/*.parquet')
        WHERE event_time >= TIMESTAMPTZ '{start}' AND event_time < TIMESTAMPTZ '{DATE}';
        CREATE TEMP VIEW tag_ids AS SELECT tag_id, category,
            CAST(row_number() OVER (ORDER BY tag_id) + 1 AS INTEGER) AS tag_index
        FROM read_parquet('{raw}/tags/*.parquet');
        CREATE TEMP VIEW category_ids AS SELECT category,
            CAST(row_number() OVER (ORDER BY category) + 1 AS INTEGER) AS category_id
        FROM (SELECT DISTINCT category FROM tag_ids WHERE category IS NOT NULL);
        CREATE TEMP VIEW item_tags AS SELECT DISTINCT i.item_id, t.tag_id, t.tag_index,
            COALESCE(c.category_id, 0) AS category_id
        FROM (SELECT item_id, unnest(tag_ids) AS tag_id FROM read_parquet('{raw}/items/*.parquet')) i
        JOIN tag_ids t USING (tag_id) LEFT JOIN category_ids c USING (category);
    """)
    decay = f"pow(0.5, (epoch(TIMESTAMPTZ '{DATE}') - epoch(e.event_time)) / 86400.0 / {h})"
    con.execute(f"""
        COPY (
          WITH activity AS (
            SELECT user_id,
                   count(*) FILTER (WHERE event_type = 'impression') AS impressions,
                   count(*) FILTER (WHERE event_type = 'click') AS clicks,
                   count(*) FILTER (WHERE event_type = 'conversion') AS conversions,
                   count(DISTINCT CAST(event_time AS DATE)) AS active_days
            FROM ev GROUP BY user_id),
          weighted AS (
            SELECT e.user_id, 'clicked_tags' AS field, t.tag_index AS value, {decay} AS w
            FROM ev e JOIN item_tags t USING (item_id) WHERE e.event_type = 'click'
            UNION ALL
            SELECT e.user_id, 'converted_tags', t.tag_index, {decay}
            FROM ev e JOIN item_tags t USING (item_id) WHERE e.event_type = 'conversion'
            UNION ALL
            SELECT e.user_id, 'clicked_categories', c.category_id, {decay}
            FROM ev e JOIN (SELECT DISTINCT item_id, category_id FROM item_tags WHERE category_id >= 2) c
                 USING (item_id) WHERE e.event_type = 'click'),
          sums AS (SELECT user_id, field, value, CAST(sum(w) AS FLOAT) AS w FROM weighted GROUP BY ALL),
          lists AS (
            SELECT user_id, field, list(value ORDER BY w DESC, value)[1:{k}] AS ids,
                   list(w ORDER BY w DESC, value)[1:{k}] AS weights
            FROM sums GROUP BY user_id, field)
          SELECT DATE '{DATE}' AS dt, a.user_id,
                 {bucket('a.active_days', conf.activity_buckets)} AS active_days,
                 {bucket('CAST(a.clicks AS DOUBLE) / NULLIF(a.impressions, 0)', conf.rate_buckets)} AS click_rate,
                 COALESCE(clicked_categories.ids, []) AS clicked_categories,
                 COALESCE(clicked_categories.weights, []) AS clicked_categories_weights,
                 COALESCE(clicked_tags.ids, []) AS clicked_tags,
                 COALESCE(clicked_tags.weights, []) AS clicked_tags_weights,
                 {bucket('a.clicks', conf.activity_buckets)} AS clicks,
                 {bucket('a.conversions', conf.activity_buckets)} AS conversions,
                 COALESCE(converted_tags.ids, []) AS converted_tags,
                 COALESCE(converted_tags.weights, []) AS converted_tags_weights,
                 {bucket('a.impressions', conf.activity_buckets)} AS impressions
          FROM activity a {lists('clicked_categories')} {lists('clicked_tags')} {lists('converted_tags')}
        ) TO '{out}/user_features.parquet' (FORMAT PARQUET);
        COPY (
          SELECT CAST(e.event_time AS DATE) AS dt, e.user_id, t.tag_id, t.tag_index, t.category_id,
                 max(CAST(e.event_type = 'click' AS INTEGER)) AS click,
                 max(CAST(e.event_type = 'conversion' AS INTEGER)) AS conversion, 'impression' AS source
          FROM ev e JOIN item_tags t USING (item_id)
          WHERE e.event_time >= TIMESTAMPTZ '{DATE - dt.timedelta(days=1)}'
          GROUP BY ALL
        ) TO '{out}/samples.parquet' (FORMAT PARQUET);
    """)
    con.close()


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="events per run, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per size (median reported)")
    parser.add_argument("--max-repeats-10m", type=int, default=1,
                        help="repetitions for sizes >= 10M (each takes minutes on 2 cores)")
    parser.add_argument("--work-dir", default=None, help="where the Parquet files go (default: a temp dir)")
    parser.add_argument("--driver-memory", default="6g")
    args = parser.parse_args(argv)

    from core.spark import spark_session

    spark = spark_session(SparkConf(master="local[*]", shuffle_partitions=8, driver_memory=args.driver_memory,
                                    app_name="bench-features"))
    cores = spark.sparkContext.defaultParallelism
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="features-bench-"))
    print(f"# work dir {work}; Spark local[*] with {cores} cores; DuckDB threads {cores}", flush=True)
    warm = work / "warmup"
    generate(warm, 50_000)
    for fn in (lambda: spark_job(spark, warm), lambda: spark_aggregation(spark, warm)):
        fn()
    results = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        root = work / f"n{size}"
        shutil.rmtree(root, ignore_errors=True)
        t = timed(generate, root, size)
        rows = pq.ParquetDataset(str(root / "raw" / "events")).read(columns=["user_id"]).num_rows
        print(f"# generated {rows:,} events in {t:.1f}s", flush=True)
        repeats = args.repeats if size < 10_000_000 else min(args.repeats, args.max_repeats_10m)
        times: dict[str, list[float]] = {"spark job": [], "spark agg": [], "duckdb agg": []}
        for rep in range(repeats):
            times["spark job"].append(timed(spark_job, spark, root))
            times["spark agg"].append(timed(spark_aggregation, spark, root))
            times["duckdb agg"].append(timed(duckdb_aggregation, root, cores))
            print(f"# {size:,} rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()),
                  flush=True)
        results[size] = (rows, repeats, {k: statistics.median(v) for k, v in times.items()})
        shutil.rmtree(root / "warehouse", ignore_errors=True)

    print("\n| events | reps | spark job s | events/s | spark agg s | duckdb agg s | spark agg / duckdb | job / duckdb |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, (rows, reps, med) in results.items():
        print(f"| {rows:,} | {reps} | {med['spark job']:.1f} | {rows / med['spark job']:,.0f} | "
              f"{med['spark agg']:.1f} | {med['duckdb agg']:.1f} | {med['spark agg'] / med['duckdb agg']:.1f}x | "
              f"{med['spark job'] / med['duckdb agg']:.1f}x |")
    sizes = sorted(results)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for key in ("spark job", "spark agg", "duckdb agg"):
            growth = results[large][2][key] / results[small][2][key]
            print(f"# {key}: {large // small}x events -> {growth:.1f}x time")
    spark.stop()
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

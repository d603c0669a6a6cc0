"""Nightly scoring: every user against every tag with the published model, exactly (docs/scoring.md).

- `scoring.inputs`: what is read, checked against the model before anything is written;
- `scoring.tag_index`: the tag side of the scan, one `tag_index` partition per model version;
- `scoring.scan`: the blocked exact scan (torch, no Spark);
- `scoring.topn`: the exact top-N of each row of scores (one compiled pass per row);
- `scoring.executor`: the mapInArrow functions the executors run.
The job itself is `jobs/score.py`.
"""

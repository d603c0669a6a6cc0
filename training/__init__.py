"""Training on Horovod workers fed by Petastorm (docs/training.md).

`loop` trains on any iterable of dict batches; `data` turns Spark examples into Petastorm
converters and a converter shard into batches; `worker` is the Horovod boundary; `metrics`,
`checkpoint`, `publish`, `report`, `artifact`, `inputs` and `errors` serve `jobs/train.py`.
"""

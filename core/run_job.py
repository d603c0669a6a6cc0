"""The driver script spark-submit runs: `run_job.py <job> [job arguments]`."""
import importlib
import sys


def main() -> None:
    job, argv = sys.argv[1], sys.argv[2:]
    module = importlib.import_module(f"jobs.{job}")
    sys.exit(module.main(argv) or 0)


if __name__ == "__main__":
    main()

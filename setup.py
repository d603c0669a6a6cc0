from setuptools import find_packages, setup

setup(
    name="mvke-profiles",
    version="0.1.0",
    description="Nightly MVKE user profiles for ad targeting: Spark features, Horovod training, Delta tables.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["jobs", "jobs.*", "features", "features.*", "mvke", "mvke.*", "core", "core.*", "synthetic", "synthetic.*", "training", "training.*", "scoring", "scoring.*", "analyst", "analyst.*", "nightly", "nightly.*"]),
    package_data={"": ["*.yaml"]},
    entry_points={"console_scripts": ["mvke-submit=core.submit:main"]},
)

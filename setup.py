"""chathub: a Twisted multi-protocol chat hub (telnet line protocol, IRC, WebSocket)."""
from setuptools import find_packages, setup

TEST = [
    "pytest>=8",
    "wheel",  # the plain (non-editable) install test builds a wheel
    "pytest-twisted>=1.14",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "irc>=20",
    "irc-parser-tests>=0.0.4",
    "pyyaml>=6",
    "playwright>=1.50",
    "trustme>=1.1",  # certificates for the TLS listener tests
    "scramp>=1.4",  # an independent SCRAM-SHA-256 client for the SASL tests
    # the checks scripts/test runs before pytest; pinned, since a new release brings new
    # findings (see docs/development.md)
    "ruff==0.17.6",
    "mypy==2.4.1",
    "mypy-zope==1.0.17",
]
POSTGRES = ["psycopg[binary]>=3.2"]
# cluster mode (chathub/cluster/redis.py): txredisapi 1.6 is the release whose reconnecting
# (factory.startConnecting) this code uses; hiredis parses replies about twice as fast;
# msgpack packs the messages between nodes (about four times faster than JSON in Python)
CLUSTER = ["txredisapi>=1.6,<1.7", "hiredis>=2", "msgpack>=1.0"]

setup(
    name="chathub",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11",
    # package_dir {"": "."} makes `pip install -e .` a plain .pth entry for the repo root, so
    # twisted.plugins (a namespace Twisted scans over sys.path) finds our plugin there too.
    package_dir={"": "."},
    packages=find_packages(include=["chathub", "chathub.*"]) + ["twisted.plugins"],
    package_data={
        "twisted": ["plugins/chathub_plugin.py"],
        "chathub": ["web/*", "web/*/*", "web/*/*/*"],
    },
    install_requires=[
        "twisted[tls]>=24.7",
        "txaio>=23.1",
        "autobahn[twisted]>=24.4",
        "irctokens>=2.0.2",
        "argon2-cffi>=23.1",
        "zope.interface>=6",
        "prometheus-client>=0.20",  # /metrics (chathub/lifecycle/metrics.py)
    ],
    extras_require={
        "test": TEST + POSTGRES + CLUSTER,
        "postgres": POSTGRES,
        "cluster": CLUSTER,
        "bench": ["py-spy==0.3.14"],  # bench/run.py --profile; 0.4.2 and 0.4.3 cannot read this Python 3.11.7 ("Failed to find python version")
    },
)

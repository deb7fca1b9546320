"""Every setting of the archiver process, in one typed object.

:func:`load_settings` is the only place that turns command-line arguments, environment
variables and ``archappl.properties`` into values; the CLI calls it with ``os.environ`` and
hands the result to :func:`pvarchiver.appliance.build_appliance`. Library code reads no
environment variable: it gets what it needs from these objects. (EPICS' own ``EPICS_CA_*``
variables are kept as they are in :attr:`CASettings.env` and parsed by the CA package.)

Each field's sources, in order of precedence, and its default are listed in the settings
table of ``docs/reference.md``; ``tests/test_settings.py`` checks that table against this
module.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .mgmt.registry_backend import check_url, default_url
from .properties import archappl_properties
from .storage.naming import NamingSettings
from .storage.url import FOLDER_VARIABLES, default_store_urls

if TYPE_CHECKING:
    from .ca import CAConfig
    from .pva.env import PVAConfig

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORT = 17665
DEFAULT_MAX_BODY = 32 << 20
DEFAULT_INITIAL_SAMPLING = 3.0
DEFAULT_ABORT_MINUTES = 1440.0
DEFAULT_SCAN_SECONDS = 60.0
DEFAULT_SECONDS_TO_BUFFER = 10.0
DEFAULT_LOW_SPACE_PERCENT = 5.0
DEFAULT_LOW_SPACE_BYTES = 1 << 30
DEFAULT_UNHEALTHY_AFTER = 60.0
#: the AA's archappl.properties key for the engine's write period
PROP_SECONDS_TO_BUFFER = "org.epics.archiverappliance.config.PVTypeInfo.secondsToBuffer"
#: the AA's archappl.properties keys of retrieval: what usereduced=true means, and the
#: folder getClientConfig serves
PROP_USE_REDUCED = "org.epics.archiverappliance.retrieval.DefaultUseReducedPostProcessor"
PROP_CLIENT_CONFIG_ROOT = (
    "org.epics.archiverappliance.retrieval.bpl.GetClientConfiguration.DocumentRoot"
)
#: the AA's shipped archappl.properties value of PROP_USE_REDUCED
DEFAULT_USE_REDUCED = "org.epics.archiverappliance.retrieval.postprocessors.TwoWeekRaw"
#: the AA's archappl.properties key of the protocol of names without ca:// or pva://
PROP_DEFAULT_PROTOCOL = "org.epics.archiverappliance.mgmt.bpl.ArchivePVAction.defaultAccessProtocol"
#: the AA's archappl.properties key naming a properties file of named flags to load at start
PROP_NAMED_FLAGS_FILE = "org.epics.archiverappliance.config.NamedFlags.readFromFile"


@dataclass(frozen=True)
class StorageSettings:
    """Where the data lives and how PV names become file names."""

    root: Path
    #: the STS, MTS and LTS store URLs (the AA's defaults under ``root``, folders resolved)
    store_urls: tuple[str, ...]
    naming: NamingSettings = field(default_factory=NamingSettings)
    #: the archappl.properties file read ("" for none: the AA's defaults)
    properties_file: str = ""
    #: what ``${VAR}`` in a PV's store URLs (its typeinfo's dataStores) expands to: the
    #: process environment, with the default stores' folder variables always defined
    macros: Mapping[str, str] = field(default_factory=dict)
    #: seconds after start (or after a PV's chain first needs it) that an ETL stage runs its
    #: first pass; None: at its aligned time, as the AA (up to one period later)
    etl_first_run_seconds: float | None = None


@dataclass(frozen=True)
class HTTPSettings:
    """The listener and the limits of ``/mgmt/bpl``."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    mgmt_max_body: int = DEFAULT_MAX_BODY
    #: clients allowed to call state-changing actions (empty: everyone)
    mgmt_allow_hosts: tuple[IPNetwork, ...] = ()
    #: bearer token state-changing actions need ("" for none)
    mgmt_token: str = ""


@dataclass(frozen=True)
class MgmtSettings:
    """The management service: identity, policies, archive workflow, storage reports."""

    identity: str = "appliance0"
    #: a site ``policies.py`` (None: the built-in policies)
    policies_file: Path | None = None
    initial_sampling_seconds: float = DEFAULT_INITIAL_SAMPLING
    abort_request_minutes: float = DEFAULT_ABORT_MINUTES
    storage_scan_seconds: float = DEFAULT_SCAN_SECONDS
    #: the AA's named flags file (``NamedFlags.readFromFile`` in archappl.properties)
    named_flags_file: Path | None = None
    #: the PV registry's URL: ``sqlite:///<root>/registry.sqlite`` (embedded, the default)
    #: or ``postgresql://user@host:port/db`` (shared by appliances; docs/deployment.md)
    registry: str = ""


@dataclass(frozen=True)
class CASettings:
    """The ``EPICS_*`` variables the engine's Channel Access client is configured from."""

    env: Mapping[str, str] = field(default_factory=dict)

    def config(self) -> CAConfig:
        from .ca import CAConfig

        return CAConfig.from_env(self.env)


@dataclass(frozen=True)
class PVASettings:
    """The ``EPICS_PVA_*`` variables the engine's PV Access client is configured from, and
    the AA's ``defaultAccessProtocol`` (which protocol a name without ``ca://``/``pva://``
    is archived over)."""

    env: Mapping[str, str] = field(default_factory=dict)
    #: archive names without a prefix over PVA (``defaultAccessProtocol=PVA``)
    default_pva: bool = False

    def config(self) -> PVAConfig:
        from .pva.env import PVAConfig

        return PVAConfig.from_env(self.env)


@dataclass(frozen=True)
class EngineSettings:
    """The engine's write loop."""

    #: the write period: every this many seconds all buffered samples go to the STS (the
    #: AA's secondsToBuffer; at least 1)
    seconds_to_buffer: float = DEFAULT_SECONDS_TO_BUFFER


@dataclass(frozen=True)
class HealthSettings:
    """When the appliance warns about its stores and when it calls itself unhealthy
    (``mgmt/health.py``: getApplianceHealth, ``/metrics``, the UI, the container
    healthcheck)."""

    #: a folder whose file system has less free space than this share of its size is low
    low_space_percent: float = DEFAULT_LOW_SPACE_PERCENT
    #: ... or less than this many bytes free (either one warns; both 0: never)
    low_space_bytes: int = DEFAULT_LOW_SPACE_BYTES
    #: a store whose writes have failed this long makes the appliance unhealthy (503)
    unhealthy_after_seconds: float = DEFAULT_UNHEALTHY_AFTER


@dataclass(frozen=True)
class RetrievalSettings:
    """Retrieval's site settings (the AA's archappl.properties keys)."""

    #: the post-processor class ``usereduced=true`` selects when a request names none
    use_reduced: str = DEFAULT_USE_REDUCED
    #: the folder getClientConfig serves files from (None: not configured)
    client_config_root: Path | None = None


@dataclass(frozen=True)
class JournalSettings:
    """The engine's write-ahead journal (``engine/journal.py``)."""

    #: folder of the journal files (None: no journal)
    folder: Path | None = None
    #: seconds between fsyncs of the journal: what a power cut can lose (0: every tick)
    fsync_seconds: float = 1.0


@dataclass(frozen=True)
class GatewaySettings:
    """Batching knobs of ``pvarchiver gateway`` (reserved: the gateway still reads its
    variables itself; :func:`load_gateway_settings` is where that moves to)."""

    #: updates per run sent to downstream clients (PVARCHIVER_GW_RUN_BATCH)
    run_batch: int = 1024
    #: upstream events collected before they are fanned out (PVARCHIVER_GW_BATCH)
    upstream_batch: int = 256


@dataclass(frozen=True)
class PVWSSettings:
    """The PVWS websocket ``/pvws/pv`` (docs/pvws.md)."""

    #: milliseconds between updates of a scalar PV per socket (PVWS's PV_THROTTLE_MS; 0:
    #: every update)
    throttle_ms: float = 1000.0
    #: the same for arrays (PV_ARRAY_THROTTLE_MS)
    array_throttle_ms: float = 10000.0
    #: PVs one socket may subscribe to
    max_subscriptions: int = 10_000
    #: PVs that are not archived connected on demand, all sockets together
    max_unarchived: int = 1000
    #: ``write`` allowed at all (PVWS's PV_WRITE_SUPPORT); also needs the mgmt access check
    write: bool = False
    #: a socket whose send has been blocked this long (a client not reading) is closed
    stall_seconds: float = 30.0


@dataclass(frozen=True)
class Settings:
    """Everything :func:`pvarchiver.appliance.build_appliance` needs."""

    storage: StorageSettings
    http: HTTPSettings = field(default_factory=HTTPSettings)
    mgmt: MgmtSettings = field(default_factory=MgmtSettings)
    ca: CASettings = field(default_factory=CASettings)
    pva: PVASettings = field(default_factory=PVASettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    journal: JournalSettings = field(default_factory=JournalSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    pvws: PVWSSettings = field(default_factory=PVWSSettings)
    #: PV names to request at start (``--archive``), as archivePV requests
    archive: tuple[str, ...] = ()

    def with_ca_env(self, updates: Mapping[str, str]) -> Settings:
        """A copy whose CA variables have ``updates`` applied (``serve --demo``)."""
        return replace(self, ca=CASettings({**self.ca.env, **updates}))

    def with_archive(self, names: Sequence[str]) -> Settings:
        """A copy that also requests ``names`` at start."""
        return replace(self, archive=(*self.archive, *names))


# ---------------------------------------------------------------------- parsing
def _float(env: Mapping[str, str], name: str, default: float) -> float:
    """A number from ``env``; a bad value is logged and the default used (a typo in a
    tuning variable should not stop the archiver)."""
    text = env.get(name)
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        log.error("%s is not a number; using %s", name, default)
        return default


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    """An integer from ``env``; ValueError names the variable."""
    text = env.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from ``1073741824``, ``1GiB``, ``1G``, ``512 MiB``, ``0``: binary units (K, M,
    G, T, with or without ``iB``/``B``); ValueError for anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, flags=re.I)
    if m is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_networks(text: str, what: str) -> tuple[IPNetwork, ...]:
    """Addresses and networks separated by commas or white space; a bad entry is logged
    and skipped."""
    nets = []
    for part in re.split(r"[,\s]+", text.strip()):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                log.error("%s: %r is not an address or network", what, part)
    return tuple(nets)


def _storage(
    env: Mapping[str, str], storage: str | None, props: Mapping[str, str], props_file: str
) -> StorageSettings:
    root = Path(storage or env.get("PVARCHIVER_STORAGE") or "storage").resolve()
    folders = {k: env[k] for k in FOLDER_VARIABLES if k in env}
    naming = NamingSettings.from_properties(props, props_file or "archappl.properties")
    macros = {**env, **{k: str(root / sub) for k, sub in FOLDER_VARIABLES.items()}, **folders}
    urls = tuple(default_store_urls(root, folders))
    first: float | None = None
    if env.get("PVARCHIVER_ETL_FIRST_RUN_SECONDS", "").strip():
        first = max(0.0, _float(env, "PVARCHIVER_ETL_FIRST_RUN_SECONDS", 0.0))
    return StorageSettings(root, urls, naming, props_file, macros, first)


def _http(env: Mapping[str, str], host: str, port: int) -> HTTPSettings:
    return HTTPSettings(
        host=host,
        port=port,
        mgmt_max_body=_int(env, "PVARCHIVER_MGMT_MAX_BODY", DEFAULT_MAX_BODY),
        mgmt_allow_hosts=parse_networks(
            env.get("PVARCHIVER_MGMT_ALLOW_HOSTS", ""), "PVARCHIVER_MGMT_ALLOW_HOSTS"
        ),
        mgmt_token=env.get("PVARCHIVER_MGMT_TOKEN", ""),
    )


def _mgmt(
    env: Mapping[str, str], initial_sampling: float | None, props: Mapping[str, str]
) -> MgmtSettings:
    policies = env.get("ARCHAPPL_POLICIES")
    flags_file = props.get(PROP_NAMED_FLAGS_FILE, "").strip()
    scan = _float(env, "PVARCHIVER_STORAGE_SCAN_SECONDS", DEFAULT_SCAN_SECONDS)
    abort = _float(env, "PVARCHIVER_ABORT_REQUEST_MINUTES", DEFAULT_ABORT_MINUTES)
    if initial_sampling is None:
        initial_sampling = _float(
            env, "PVARCHIVER_INITIAL_SAMPLING_SECONDS", DEFAULT_INITIAL_SAMPLING
        )
    return MgmtSettings(
        identity=env.get("ARCHAPPL_MYIDENTITY", "appliance0"),
        policies_file=Path(policies) if policies else None,
        initial_sampling_seconds=initial_sampling,
        abort_request_minutes=abort,
        storage_scan_seconds=max(0.0, scan),
        named_flags_file=Path(flags_file) if flags_file else None,
    )


def _pva(env: Mapping[str, str], props: Mapping[str, str]) -> PVASettings:
    """``EPICS_PVA_*`` as they are; ``defaultAccessProtocol`` ``PVA`` or ``CA`` (another
    value is logged and CA used, the AA's default)."""
    proto = props.get(PROP_DEFAULT_PROTOCOL, "").strip().upper() or "CA"
    if proto not in ("CA", "PVA"):
        log.error("%s must be CA or PVA, not %r; using CA", PROP_DEFAULT_PROTOCOL, proto)
        proto = "CA"
    pva_env = {k: v for k, v in env.items() if k.startswith("EPICS_PVA")}
    return PVASettings(pva_env, default_pva=proto == "PVA")


def _engine(env: Mapping[str, str], props: Mapping[str, str]) -> EngineSettings:
    """``PVARCHIVER_SECONDS_TO_BUFFER``, else the AA's property, else 10 s; at least 1 s."""
    default = DEFAULT_SECONDS_TO_BUFFER
    text = props.get(PROP_SECONDS_TO_BUFFER)
    if text is not None:
        try:
            default = float(text)
        except ValueError:
            log.error("%s is not a number; using %s", PROP_SECONDS_TO_BUFFER, default)
    period = _float(env, "PVARCHIVER_SECONDS_TO_BUFFER", default)
    if not period >= 1.0:  # NaN too
        log.error("the write period must be at least 1 s, not %s; using 1", period)
        period = 1.0
    return EngineSettings(period)


def _health(env: Mapping[str, str]) -> HealthSettings:
    """Bad values are logged and the default used: a typo here must not stop archiving."""
    percent = _float(env, "PVARCHIVER_LOW_SPACE_PERCENT", DEFAULT_LOW_SPACE_PERCENT)
    if not 0.0 <= percent <= 100.0:
        log.error("PVARCHIVER_LOW_SPACE_PERCENT must be 0-100, not %s", percent)
        percent = DEFAULT_LOW_SPACE_PERCENT
    size = DEFAULT_LOW_SPACE_BYTES
    text = env.get("PVARCHIVER_LOW_SPACE_BYTES")
    if text is not None:
        try:
            size = parse_size(text)
        except ValueError:
            log.error("PVARCHIVER_LOW_SPACE_BYTES is not a size (1GiB, 500M, 0); using 1GiB")
    after = _float(env, "PVARCHIVER_UNHEALTHY_AFTER_SECONDS", DEFAULT_UNHEALTHY_AFTER)
    if not after >= 0.0:
        log.error("PVARCHIVER_UNHEALTHY_AFTER_SECONDS must not be negative; using 60")
        after = DEFAULT_UNHEALTHY_AFTER
    return HealthSettings(percent, size, after)


def _retrieval(props: Mapping[str, str]) -> RetrievalSettings:
    root = props.get(PROP_CLIENT_CONFIG_ROOT, "").strip()
    return RetrievalSettings(
        use_reduced=props.get(PROP_USE_REDUCED, "").strip() or DEFAULT_USE_REDUCED,
        client_config_root=Path(root) if root else None,
    )


def _journal(
    env: Mapping[str, str], root: Path, folder: str | None, fsync: float | None
) -> JournalSettings:
    """On by default, in ``<storage root>/journal``; ``off`` switches it off."""
    text = folder if folder is not None else env.get("PVARCHIVER_JOURNAL", "")
    if text.strip().lower() in ("off", "no", "none", "0"):
        return JournalSettings(None)
    where = Path(text).resolve() if text.strip() else root / "journal"
    if fsync is None:
        fsync = _float(env, "PVARCHIVER_JOURNAL_FSYNC_SECONDS", 1.0)
    if fsync < 0:
        raise ValueError(f"the journal's fsync interval must not be negative, not {fsync}")
    return JournalSettings(where, fsync)


def _registry(env: Mapping[str, str], root: Path, given: str | None) -> str:
    """``--registry``, else ``PVARCHIVER_REGISTRY``, else the SQLite file in the storage
    root; ValueError for a URL that is neither SQLite nor PostgreSQL."""
    text = (given if given is not None else env.get("PVARCHIVER_REGISTRY", "")).strip()
    return check_url(text) if text else default_url(root)


def load_settings(
    env: Mapping[str, str],
    *,
    storage: str | None = None,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    initial_sampling: float | None = None,
    archive: Sequence[str] = (),
    journal: str | None = None,
    journal_fsync: float | None = None,
    registry: str | None = None,
) -> Settings:
    """The settings of ``pvarchiver serve``: the keyword arguments are the command line's
    (None: not given), ``env`` the process environment, and ``archappl.properties`` the file
    ``env`` names. Raises :class:`~pvarchiver.properties.PropertiesError` or ValueError
    with a message for the user."""
    props, props_file = archappl_properties(env)
    store = _storage(env, storage, props, props_file)
    return Settings(
        storage=store,
        http=_http(env, host, port),
        mgmt=replace(
            _mgmt(env, initial_sampling, props), registry=_registry(env, store.root, registry)
        ),
        ca=CASettings({k: v for k, v in env.items() if k.startswith("EPICS_")}),
        pva=_pva(env, props),
        engine=_engine(env, props),
        health=_health(env),
        journal=_journal(env, store.root, journal, journal_fsync),
        retrieval=_retrieval(props),
        pvws=_pvws(env),
        archive=tuple(archive),
    )


def _pvws(env: Mapping[str, str]) -> PVWSSettings:
    """The websocket's knobs; a negative throttle or limit is logged and the default kept."""
    d = PVWSSettings()

    def at_least_zero(name: str, default: float) -> float:
        value = _float(env, name, default)
        if value < 0:
            log.error("%s must not be negative; using %s", name, default)
            return default
        return value

    return PVWSSettings(
        throttle_ms=at_least_zero("PVARCHIVER_PVWS_THROTTLE_MS", d.throttle_ms),
        array_throttle_ms=at_least_zero("PVARCHIVER_PVWS_ARRAY_THROTTLE_MS", d.array_throttle_ms),
        max_subscriptions=max(
            0, _int(env, "PVARCHIVER_PVWS_MAX_SUBSCRIPTIONS", d.max_subscriptions)
        ),
        max_unarchived=max(0, _int(env, "PVARCHIVER_PVWS_MAX_UNARCHIVED", d.max_unarchived)),
        write=env.get("PVARCHIVER_PVWS_WRITE", "").strip().lower() in ("1", "true", "yes", "on"),
        stall_seconds=max(1.0, at_least_zero("PVARCHIVER_PVWS_STALL_SECONDS", d.stall_seconds)),
    )


def load_gateway_settings(env: Mapping[str, str]) -> GatewaySettings:
    """The gateway's batching knobs from the environment."""
    return GatewaySettings(
        run_batch=_int(env, "PVARCHIVER_GW_RUN_BATCH", 1024),
        upstream_batch=_int(env, "PVARCHIVER_GW_BATCH", 256),
    )

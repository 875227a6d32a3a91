"""Loading what publishing needs: channels, contracts, catalog definitions, ownership.

Built once per worker process and reused; rebuilt when a configuration file changes or the
stored catalog definitions change (their hash). Publishing never calls the PIM.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.channels.config import ChannelConfig, ChannelConfigError, load_channels
from app.config import Settings
from app.mapping.contract import ContractStore
from app.mapping.errors import ContractError
from app.ownership import OwnershipTable, load_ownership
from app.pim import repository as pim_repo
from app.pim.catalog import CatalogDefinitions, definitions_from_dict
from app.sync.units import ChannelRuntime


class ChannelUnavailable(RuntimeError):
    """A channel that cannot publish at all (bad configuration, missing contract...).

    Failing its units one by one would bury the cause under dead letters: the channel's run
    fails once with this message instead, and the other channels go on.
    """


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def _tree_mtime(root: Path) -> float:
    latest = _mtime(root)
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            latest = max(latest, _mtime(Path(dirpath) / name))
    return latest


@dataclass
class _Cached:
    key: tuple[object, ...]
    value: object


class RuntimeRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: _Cached | None = None
        self._contracts: _Cached | None = None
        self._defs: _Cached | None = None
        self._ownership: _Cached | None = None
        self._runtimes: dict[tuple[object, ...], ChannelRuntime] = {}

    def channels(self, settings: Settings) -> dict[str, ChannelConfig]:
        key = (str(settings.channels_file), _mtime(Path(settings.channels_file)))
        with self._lock:
            if self._channels is None or self._channels.key != key:
                self._channels = _Cached(key, load_channels(settings.channels_file))
            return self._channels.value  # type: ignore[return-value]

    def contracts(self, settings: Settings) -> ContractStore:
        root = Path(settings.contracts_dir)
        key = (str(root), _tree_mtime(root))
        with self._lock:
            if self._contracts is None or self._contracts.key != key:
                self._contracts = _Cached(key, ContractStore.load(root, strict=False))
            return self._contracts.value  # type: ignore[return-value]

    def ownership(self, settings: Settings) -> OwnershipTable:
        path = settings.ownership_file
        key = (str(path), _mtime(Path(path)) if path else None)
        with self._lock:
            if self._ownership is None or self._ownership.key != key:
                self._ownership = _Cached(key, load_ownership(path))
            return self._ownership.value  # type: ignore[return-value]

    def definitions(self, session: Session) -> tuple[CatalogDefinitions, str]:
        digest = pim_repo.definitions_hash(session)
        with self._lock:
            if self._defs is not None and self._defs.key == (digest,):
                return self._defs.value  # type: ignore[return-value]
        if digest is None:
            value: tuple[CatalogDefinitions, str] = (CatalogDefinitions(), "none")
        else:
            loaded = pim_repo.load_definitions(session)
            assert loaded is not None
            data, digest = loaded
            value = (definitions_from_dict(data), digest)
        with self._lock:
            self._defs = _Cached((digest,), value)
        return value

    def runtime(
        self,
        session: Session,
        settings: Settings,
        channel_code: str,
        definitions: tuple[CatalogDefinitions, str] | None = None,
    ) -> ChannelRuntime:
        """The channel's runtime (config, contract, definitions), built once per version of
        each. ``definitions``: already read in this transaction (one read for many channels)."""
        try:
            channels = self.channels(settings)
            channel = channels.get(channel_code)
            if channel is None:
                raise ChannelUnavailable(
                    f"channel {channel_code!r} is not configured in {settings.channels_file} "
                    f"(configured: {', '.join(sorted(channels))})"
                )
            if channel.contract is None:
                raise ChannelUnavailable(
                    f"channel {channel_code!r} pins no mapping contract (set `contract: ID@N`)"
                )
            store = self.contracts(settings)
            contract = store.get(channel.contract.id, channel.contract.version)
            ownership = self.ownership(settings)
        except (ChannelConfigError, ContractError) as exc:
            raise ChannelUnavailable(str(exc)) from None
        defs, digest = definitions or self.definitions(session)
        key = (
            channel_code,
            channel.fingerprint(),
            contract.key,
            contract.contract.fingerprint(),
            digest,
            id(ownership),
        )
        with self._lock:
            rt = self._runtimes.get(key)
            if rt is None:
                rt = ChannelRuntime(channel, contract, defs, ownership, digest)
                self._runtimes = {k: v for k, v in self._runtimes.items() if k[0] != channel_code}
                self._runtimes[key] = rt
            return rt


REGISTRY = RuntimeRegistry()


def configured_channels(settings: Settings, only: list[str] | None = None) -> list[str]:
    """The configured channels' codes (sorted), or ``only`` checked against them (in order)."""
    channels = REGISTRY.channels(settings)
    if not only:
        return sorted(channels)
    unknown = [c for c in only if c not in channels]
    if unknown:
        raise ValueError(
            f"unknown channel(s) {', '.join(unknown)}; configured: {', '.join(sorted(channels))}"
        )
    return list(dict.fromkeys(only))

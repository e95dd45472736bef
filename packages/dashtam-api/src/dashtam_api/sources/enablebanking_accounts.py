"""Enable Banking's accounts as a connection keeps them (sources/enablebanking.py reads them):
what a session covers, the key of each (never the uid, which every consent changes), and the
sealed credential that holds them.

An account's key is its ``identification_hash`` (the same across consents), else the digest of
its IBAN or other account number; an account of a new consent that matches one the connection
has, by any of its hashes or identifiers, keeps that one's key. An account the bank gives
nothing but a uid is left out (a key made of the uid would add it again with every consent).
"""

import hashlib
import json
from dataclasses import dataclass

from dashtam_api.sources.shapes import SourceError, last4, shape_error

ACCOUNT_TYPES = {"CACC": "checking", "SVGS": "savings", "CARD": "credit_card", "LOAN": "loan"}


@dataclass(frozen=True)
class Held:
    """One account of the session, as the connection keeps it: ``hash`` is its key (its
    accounts row's external_id); ``hashes`` every identification hash the bank gave it and
    ``ids`` digests of its identifiers (IBAN, others), by which a later consent finds it."""

    uid: str
    hash: str
    name: str
    currency: str
    last4: str | None
    type: str
    hashes: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()


def credential(
    session_id: str, accounts: list[Held], left_out: list[str] = (), psu_headers: list[str] = ()
) -> str:
    """The sealed JSON: the session, its accounts, the names of those left out, and the PSU
    headers the bank requires (``required_psu_headers``: it reads only while the person is
    there to send them)."""
    return json.dumps(
        {"session_id": session_id, "accounts": [vars(a) for a in accounts],
         "left_out": list(left_out), "psu_headers": list(psu_headers)}
    )  # fmt: skip


def _held(raw: dict) -> Held:
    hashes, ids = tuple(raw.get("hashes") or ()), tuple(raw.get("ids") or ())
    return Held(**{**raw, "hashes": hashes, "ids": ids})


def held_of(credential_text: str) -> tuple[str, list[Held]]:
    try:
        held = json.loads(credential_text)
        return held["session_id"], [_held(a) for a in held["accounts"]]
    except (ValueError, KeyError, TypeError):
        raise SourceError(
            "invalid_credential", "the connection holds no Enable Banking session: connect again",
            transient=False, needs_person=True,
        ) from None  # fmt: skip


def _listed(credential_text: str, key: str) -> list[str]:
    try:
        return [str(n) for n in json.loads(credential_text).get(key) or ()]
    except (ValueError, AttributeError, TypeError):
        return []


def left_out_of(credential_text: str) -> list[str]:
    """The names of the accounts the consent covers that Dashtam could not key (no lasting
    identity at the bank)."""
    return _listed(credential_text, "left_out")


def psu_headers_of(credential_text: str) -> list[str]:
    """The PSU headers the connection's bank requires (none: it reads unattended too)."""
    return _listed(credential_text, "psu_headers")


def json_object(value, where: str) -> dict:
    """A JSON object the bank may leave out (null), never anything else."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise shape_error(where)
    return value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _identities(raw: dict) -> tuple[list[str], list[str], str | None]:
    """An account's identification hashes, digests of its identifiers, and its IBAN. An IBAN's
    digest is of the IBAN alone (the key accounts without a hash had before: kept)."""
    if not isinstance(raw.get("identification_hashes") or [], list):
        raise shape_error("an account's identification_hashes")
    hashes = [raw.get("identification_hash"), *(raw.get("identification_hashes") or ())]
    hashes = list(dict.fromkeys(str(h) for h in hashes if h and isinstance(h, str)))
    account_id = json_object(raw.get("account_id"), "an account's account_id")
    iban = account_id.get("iban") if isinstance(account_id.get("iban"), str) else None
    ids = [_digest(iban)] if iban else []
    other = json_object(account_id.get("other"), "an account's account_id.other")
    listed = raw.get("all_account_ids") or []
    if not isinstance(listed, list):
        raise shape_error("an account's all_account_ids")
    for one in [other, *listed]:
        one = json_object(one, "an account's identifier")
        value, scheme = one.get("identification"), str(one.get("scheme_name") or "")
        if isinstance(value, str) and value:
            ids.append(_digest(value) if scheme == "IBAN" else _digest(f"{scheme}:{value}"))
    return hashes, list(dict.fromkeys(ids)), iban


def accounts_of(session: dict, known: dict | None = None) -> list[Held]:
    """The accounts a new session covers that Dashtam keeps (``covered``'s rule)."""
    return covered(session, known)[0]


def covered(session: dict, known: dict | None = None) -> tuple[list[Held], list[str]]:
    """The accounts a new session covers (POST /sessions' answer), and the names of those left
    out. ``known``: each hash and identifier digest of the accounts the connection has to its
    key: an account found there by any of them keeps that key (a reconnection keeps it). Else
    its key is its identification hash, else its IBAN's or another identifier's digest; an
    account with none of these (only a uid, which the next consent changes) is left out: any
    key made up for it would change, and every reconnection would add it again."""
    known = known or {}
    found, left_out = [], []
    accounts = session.get("accounts") or ()
    if not isinstance(accounts, list):
        raise shape_error("a session's accounts")
    for raw in accounts:
        if not isinstance(raw, dict) or not raw.get("uid"):
            raise shape_error("a session's account")
        name = str(raw.get("name") or raw.get("product") or "Account")[:200]
        hashes, ids, iban = _identities(raw)
        taken = {held.hash for held in found}
        key = next((known[i] for i in (*hashes, *ids) if known.get(i) not in (None, *taken)), None)
        key = key or next((i for i in hashes + ids if i not in taken), None)
        if key is None:
            left_out.append(name)
            continue
        found.append(
            Held(
                uid=str(raw["uid"]),
                hash=key,
                name=name,
                currency=str(raw.get("currency") or "EUR")[:3],
                last4=last4(iban),
                type=ACCOUNT_TYPES.get(str(raw.get("cash_account_type")), "bank"),
                hashes=tuple(hashes),
                ids=tuple(ids),
            )
        )
    return found, left_out


def known_keys(accounts: list[Held], stored: list[str]) -> dict:
    """What ``accounts_of`` matches a new consent's accounts by: the connection's stored keys,
    and every hash and identifier of the accounts its last session covered."""
    known = {key: key for key in stored}
    for held in accounts:
        for i in (held.hash, *held.hashes, *held.ids):
            known.setdefault(i, held.hash)
    return known

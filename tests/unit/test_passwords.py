"""The password hasher: argon2id, and a stand-in hash so that an unknown e-mail costs a sign-in
what a wrong password costs."""

import asyncio

from dashtam_api.auth.security import Passwords
from dashtam_core.config import Settings

CHEAP = {
    "PASSWORD_HASH_TIME_COST": 1,
    "PASSWORD_HASH_MEMORY_KIB": 1024,
    "PASSWORD_HASH_PARALLELISM": 1,
}


def passwords_counting_hashes() -> tuple[Passwords, list[str]]:
    passwords = Passwords(Settings.model_construct(**{**Settings().model_dump(), **CHEAP}))
    made: list[str] = []
    real_hash = passwords._hasher.hash

    def counting(password: str) -> str:
        made.append(password)
        return real_hash(password)

    passwords._hasher.hash = counting
    return passwords, made


async def test_the_stand_in_hash_is_made_once_and_not_when_the_hasher_is():
    passwords, made = passwords_counting_hashes()
    assert made == []  # nothing hashed while the app is being built (~0.16 s at real costs)

    stored = await passwords.hash("correct horse")
    assert await passwords.verify("correct horse", stored)
    assert not await passwords.verify("wrong", stored)
    assert len(made) == 1  # only the password itself

    # An unknown e-mail (no hash): checked against the stand-in, made on this first need...
    assert not await passwords.verify("anything", None)
    assert not await passwords.verify("anything", "")
    assert len(made) == 2
    # ...once, however many misses come at once, and prepare() (the app's start) adds none.
    await asyncio.gather(*(passwords.verify("x", None) for _ in range(5)))
    passwords.prepare()
    assert len(made) == 2


def test_prepare_makes_the_stand_in_before_the_first_miss():
    passwords, made = passwords_counting_hashes()
    passwords.prepare()
    passwords.prepare()
    assert len(made) == 1
    assert not asyncio.run(passwords.verify("anything", None))
    assert len(made) == 1

"""The environments' mail catcher as the servers run it (`inv up`, `inv test` start it): SMTP
with STARTTLS required under the project's certificate, an HTTPS API under its CA that answers
Mailpit's requests, one environment's mail apart from the other's."""

import smtplib
import ssl

import httpx
import pytest

from infra.errors import InfraError
from tests.fixtures.smtp import unique_address


async def test_mail_is_kept_per_environment_and_read_back(mail_server):
    address = unique_address("catcher")
    await mail_server.send(to=address, environment="testing", subject="for the tests")
    await mail_server.send(to=address, environment="development", subject="for development")

    (kept,) = mail_server.to(address)  # the testing tag only
    assert kept["Subject"] == "for the tests"
    assert kept.get_content().strip() == f"sent by a test to {address}"

    reader = mail_server.reader
    (summary,) = reader.search(f"tag:testing to:{address}")
    assert summary["Tags"] == ["testing"]
    detail = reader.message(summary["ID"])
    assert detail["Text"].strip() == f"sent by a test to {address}"
    assert "X-Dashtam-Environment: testing" in reader.raw(summary["ID"])

    # Deleting one environment's mail leaves the other's.
    reader.delete(f"tag:testing to:{address}")
    assert mail_server.to(address) == []
    (other,) = reader.search(f"tag:development to:{address}")
    reader.delete(f"tag:development to:{address}")
    assert reader.search(f"to:{address}") == []

    with pytest.raises(InfraError, match="no such message"):
        reader.message(other["ID"])
    with pytest.raises(InfraError, match="bad query"):
        reader.search('to:"unclosed')
    context = ssl.create_default_context(cafile=str(reader.ca_file))
    async with httpx.AsyncClient(verify=context) as client:
        page = await client.get(reader.url + "/")
    assert page.status_code == 200
    assert "Mail kept by the local catcher" in page.text


def test_mail_without_starttls_is_refused(mail_server):
    """The catcher asks of Dashtam what Dashtam asks of any server: no cleartext mail."""
    with smtplib.SMTP(mail_server.host, mail_server.smtp_port, timeout=10) as plain:
        plain.ehlo()
        assert plain.has_extn("starttls")
        code, reply = plain.mail("probe@localhost")
        assert code == 530, reply

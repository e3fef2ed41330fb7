"""The private-address rule of SPEC §5.3: which addresses are refused, that a hop is sent to the
address that was checked, that every redirect hop is checked, and what crosses an origin."""

import ipaddress

import httpx
import msgspec
import pytest

from services.tools import net_guard
from services.tools.results import ToolError
from tests.kit import web_pages

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # the cloud metadata address
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "2002:7f00:1::",  # 6to4 around 127.0.0.1
    "2001:db8::1",  # documentation
]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert not net_guard.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert net_guard.is_public(ipaddress.ip_address(address))


async def test_a_literal_private_address_is_refused_with_the_spec_sentence():
    with pytest.raises(ToolError) as caught:
        await net_guard.public_address("10.0.0.7", 80)
    assert (caught.value.kind, str(caught.value)) == (
        "invalid_arguments",
        "refusing to fetch a private address (10.0.0.7); the operator can allow it",
    )


async def test_a_name_that_resolves_to_loopback_is_refused():
    with pytest.raises(ToolError) as caught:
        await net_guard.public_address("localhost", 80)
    assert str(caught.value).startswith("refusing to fetch a private address (")
    assert ipaddress.ip_address(str(caught.value).split("(")[1].split(")")[0]).is_loopback


async def test_a_name_that_does_not_resolve_fails():
    with pytest.raises(ToolError) as caught:
        await net_guard.public_address("no-such-host.invalid", 80)
    assert caught.value.kind == "failed"
    assert str(caught.value).startswith("cannot resolve the host 'no-such-host.invalid': ")


async def test_a_checked_hop_is_sent_to_the_checked_address_with_the_name_as_host():
    async with net_guard.client(5) as http:
        url = httpx.URL("https://93.184.216.34:8443/path?q=1")
        request = await net_guard.admitted(http, url, "GET", {"X-A": "b"}, allow_private=False)
    assert str(request.url) == "https://93.184.216.34:8443/path?q=1"
    assert (request.headers["Host"], request.headers["X-A"]) == ("93.184.216.34:8443", "b")
    assert request.extensions["sni_hostname"] == "93.184.216.34"


async def test_a_redirect_from_a_public_hop_to_loopback_is_refused():
    """The first hop passes; the Location it answers with is checked like the first URL."""
    first = httpx.URL("http://93.184.216.34/start")
    async with net_guard.client(5) as http:
        await net_guard.admitted(http, first, "GET", {}, allow_private=False)
        answer = httpx.Response(302, headers={"Location": "http://127.0.0.1:8080/admin"})
        target = net_guard.next_url(answer, first)
        assert target == httpx.URL("http://127.0.0.1:8080/admin")
        with pytest.raises(ToolError) as caught:
            await net_guard.admitted(http, target, "GET", {}, allow_private=False)
    assert str(caught.value) == (
        "refusing to fetch a private address (127.0.0.1); the operator can allow it"
    )


def test_a_redirect_resolves_against_the_current_url():
    current = httpx.URL("http://93.184.216.34/a/b")
    relative = httpx.Response(301, headers={"Location": "../c"})
    assert net_guard.next_url(relative, current) == httpx.URL("http://93.184.216.34/c")
    assert net_guard.next_url(httpx.Response(200, headers={"Location": "/x"}), current) is None
    assert net_guard.next_url(httpx.Response(302), current) is None


def test_a_redirect_to_another_scheme_fails():
    answer = httpx.Response(302, headers={"Location": "ftp://93.184.216.34/f"})
    with pytest.raises(ToolError) as caught:
        net_guard.next_url(answer, httpx.URL("http://93.184.216.34/"))
    assert (caught.value.kind, str(caught.value)) == (
        "failed",
        "'http://93.184.216.34/' redirected to an unusable URL 'ftp://93.184.216.34/f'",
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/", "only http and https URLs can be fetched: 'ftp://example.org/'"),
        ("http:///path", "the URL 'http:///path' has no host"),
    ],
)
def test_only_absolute_http_urls_are_taken(url, message):
    with pytest.raises(ToolError) as caught:
        net_guard.parsed(url)
    assert (caught.value.kind, str(caught.value)) == ("invalid_arguments", message)


async def test_the_loopback_site_is_refused_unless_allowed():
    async with web_pages.serving() as site, net_guard.client(5) as http:
        refused = net_guard.Fetch(url=site.url("/notes.txt"))
        with pytest.raises(ToolError) as caught:
            async with net_guard.opened(http, refused):
                pass
        allowed = msgspec.structs.replace(refused, allow_private=True)
        async with net_guard.opened(http, allowed) as reached:
            assert reached.response.status_code == 200
    assert caught.value.kind == "invalid_arguments"
    assert site.methods == ["GET"]


async def test_credentials_go_no_further_than_their_origin():
    async with web_pages.serving() as site, net_guard.client(5) as http:
        other_origin = site.url("/headers").replace("127.0.0.1", "localhost")
        headers = {"Authorization": "Bearer secret", "X-Kept": "1"}
        seen = []
        for target in (site.url("/headers"), other_origin):
            fetch = net_guard.Fetch(
                url=site.url(f"/to?url={target}"), headers=headers, allow_private=True
            )
            async with net_guard.opened(http, fetch) as reached:
                seen.append(msgspec.json.decode(await reached.response.aread()))
    assert (seen[0]["authorization"], seen[0]["x-kept"]) == ("Bearer secret", "1")
    assert ("authorization" in seen[1], seen[1]["x-kept"]) == (False, "1")

"""The web tools' way out (SPEC §5.3): http and https only, redirects followed here (at most 10),
and every hop's host resolved and refused when it is loopback, link-local, private or otherwise
not public, unless `tools.allow_private_network` is true.

A checked hop is sent to the address that was checked (the URL's host goes in `Host` and in TLS
SNI), so a DNS answer that changes between the check and the connect cannot slip through.
"""

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import msgspec

from services.tools.results import ToolError

MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "Mozilla/5.0 (compatible; Stellaclaw/0.1)"
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Fetch(msgspec.Struct, frozen=True, kw_only=True):
    """One request as the model asked for it, before any redirect."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    allow_private: bool = False


class Reached(msgspec.Struct, frozen=True, kw_only=True):
    """The response at the end of the redirects (its body not read yet) and its URL."""

    response: httpx.Response
    url: str


def client(timeout_s: float) -> httpx.AsyncClient:
    """A client that follows no redirect itself and ignores proxy variables (a proxy would
    connect where the guard never looked)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def parsed(url: str) -> httpx.URL:
    """The URL, if it is an absolute http or https URL with a host."""
    try:
        found = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ToolError("invalid_arguments", f"{url!r} is not a valid URL: {exc}") from None
    if found.scheme not in ("http", "https"):
        raise ToolError("invalid_arguments", f"only http and https URLs can be fetched: {url!r}")
    if not found.raw_host:
        raise ToolError("invalid_arguments", f"the URL {url!r} has no host")
    return found


@asynccontextmanager
async def opened(http: httpx.AsyncClient, fetch: Fetch) -> AsyncIterator[Reached]:
    """Send the request and follow its redirects, checking every hop; the final response is
    open for streaming inside the block. Connection errors become `failed`, timeouts `timed_out`."""
    url = parsed(fetch.url)
    headers = fetch.headers
    for _ in range(MAX_REDIRECTS + 1):
        request = await admitted(
            http, url, fetch.method, headers, allow_private=fetch.allow_private
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise failure(exc, str(url)) from None
        try:
            target = next_url(response, url)
            if target is None:
                yield Reached(response=response, url=str(url))
                return
        finally:
            await response.aclose()
        if target.netloc != url.netloc or target.scheme != url.scheme:
            headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
        url = target
    raise ToolError("failed", f"stopped after {MAX_REDIRECTS} redirects at {str(url)!r}")


def next_url(response: httpx.Response, url: httpx.URL) -> httpx.URL | None:
    """Where a redirect points (relative to `url`), or None when the response is the answer."""
    location = response.headers.get("Location")
    if response.status_code not in REDIRECT_STATUSES or not location:
        return None
    try:
        return parsed(str(url.join(location)))
    except (ToolError, httpx.InvalidURL):
        message = f"{str(url)!r} redirected to an unusable URL {location!r}"
        raise ToolError("failed", message) from None


async def admitted(
    http: httpx.AsyncClient,
    url: httpx.URL,
    method: str,
    headers: dict[str, str],
    *,
    allow_private: bool,
) -> httpx.Request:
    """The request for one hop; unless private addresses are allowed, pinned to a checked one."""
    if allow_private:
        return http.build_request(method, url, headers=headers)
    host = url.raw_host.decode("ascii")
    address = await public_address(host, url.port or (443 if url.scheme == "https" else 80))
    pinned = url.copy_with(host=str(address))
    sent = {k: v for k, v in headers.items() if k.lower() != "host"}
    sent["Host"] = url.netloc.decode("ascii")
    return http.build_request(method, pinned, headers=sent, extensions={"sni_hostname": host})


async def public_address(host: str, port: int) -> IPAddress:
    """The first address `host` resolves to, if every one of them is public."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await resolved(host, port)
    for address in addresses:
        if not is_public(address):
            raise ToolError(
                "invalid_arguments",
                f"refusing to fetch a private address ({address}); the operator can allow it",
            )
    return addresses[0]


async def resolved(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ToolError("failed", f"cannot resolve the host {host!r}: {exc.strerror}") from None
    # the address without an IPv6 zone (`fe80::1%eth0`): link-local either way
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
    if not addresses:
        raise ToolError("failed", f"the host {host!r} has no address")
    return addresses


def is_public(address: IPAddress) -> bool:
    """Whether an address is on the public internet (an IPv4 address inside IPv6 counts as
    itself): loopback, link-local, private, unspecified, multicast and reserved are not."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is not None:
            return is_public(inner)
    return address.is_global and not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


def failure(exc: httpx.HTTPError, url: str) -> ToolError:
    """An httpx error as one sentence the model can act on."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return ToolError("timed_out", f"{url} did not answer in time ({detail})")
    if isinstance(exc, httpx.ConnectError):
        return ToolError("failed", f"could not connect to {url}: {detail}")
    return ToolError("failed", f"fetching {url} failed: {detail}")

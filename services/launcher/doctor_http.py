"""`stellaclaw doctor` over HTTP: each model endpoint and the Bot API, one cheap request each.

    provider                       request                              proves
    openai_chat, openai_responses  GET {base_url}/models, bearer key    reachable, key accepted,
                                                                        the model is listed
      at openrouter.ai             GET {base_url}/key, bearer key       (its /models is public)
    anthropic                      GET {base_url}/models, x-api-key     reachable, key accepted
    codex                          none: the auth file is read here     signed in (`codex login`)
    telegram                       GET {api_base}/bot<token>/getMe      the token's bot

No request costs tokens, and no secret is ever part of a line: the bot token is in the URL, so every
text that could carry the URL goes through `bot_api.redact` first.
"""

import asyncio
import os

import httpx
import msgspec

from services.delivery.bot_api import redact
from services.launcher.doctor_findings import Finding, failed, passed, warned
from services.session.providers import codex_auth
from services.session.providers.anthropic import API_VERSION
from services.session.providers.protocol import AuthError
from shared.config import TelegramConfig
from shared.model_config import ModelConfig

TIMEOUT = httpx.Timeout(10.0)
OPENROUTER_HOST = "openrouter.ai"


class ListedModel(msgspec.Struct, frozen=True):
    id: str


class ModelList(msgspec.Struct, frozen=True):
    """`GET /models` as OpenAI-compatible servers answer it (the ids are all we read)."""

    data: list[ListedModel]


class BotUser(msgspec.Struct, frozen=True):
    id: int
    username: str = ""


class GetMeAnswer(msgspec.Struct, frozen=True):
    ok: bool
    result: BotUser | None = None
    error_code: int | None = None
    description: str = ""


MODEL_LIST: msgspec.json.Decoder[ModelList] = msgspec.json.Decoder(ModelList)
GET_ME: msgspec.json.Decoder[GetMeAnswer] = msgspec.json.Decoder(GetMeAnswer)


async def model_findings(models: dict[str, ModelConfig]) -> list[Finding]:
    """One line per configured model, checked side by side."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        checks = (model_finding(http, name, model) for name, model in models.items())
        return list(await asyncio.gather(*checks))


async def model_finding(http: httpx.AsyncClient, name: str, model: ModelConfig) -> Finding:
    if model.provider == "codex":
        return await asyncio.to_thread(codex_finding, name, model)
    base = model.base_url.rstrip("/")
    headers = dict(model.headers)
    if model.provider == "anthropic":
        url = f"{base}/models"
        headers |= {"anthropic-version": API_VERSION, "x-api-key": model.api_key or ""}
    else:
        is_openrouter = httpx.URL(base).host == OPENROUTER_HOST
        url = f"{base}/key" if is_openrouter else f"{base}/models"
        if model.api_key:
            headers["Authorization"] = f"Bearer {model.api_key}"
    check = f"model {name}"
    try:
        response = await http.get(url, headers=headers)
    except httpx.TimeoutException:
        fix = f"check models.{name}.base_url and the network"
        return failed(check, f"{base}: no answer within {TIMEOUT.read:g} s", fix)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        found = f"cannot reach {base}: {type(exc).__name__}: {exc}"
        return failed(check, found, f"check models.{name}.base_url and the network")
    return answered(name, model, url, response)


def answered(name: str, model: ModelConfig, url: str, response: httpx.Response) -> Finding:
    """What the endpoint's answer says about the key and the model."""
    check, status = f"model {name}", response.status_code
    if status in (401, 403):
        refused, verb = ("refused the key", "fix") if model.api_key else ("wants a key", "set")
        return failed(check, f"{url} {refused} (HTTP {status})", f"{verb} models.{name}.api_key")
    if status in (404, 405):
        found = f"{url} answered HTTP {status}, so the key could not be checked"
        return warned(check, found, f"check models.{name}.base_url (most end in /v1)")
    if status == 429:
        found = f"{url} accepted the key but rate-limits it now (HTTP 429)"
        return warned(check, found, "look at the account's limits and credit")
    if status >= 300:
        found = f"{url} answered HTTP {status}"
        return failed(check, found, f"check models.{name}.base_url, or try again later")
    keyed = "accepted the key" if model.api_key else "answered without a key"
    if model.provider == "anthropic" or not url.endswith("/models"):
        return passed(check, f"{model.base_url} {keyed}")
    return _listed(name, model, keyed, response.content)


def _listed(name: str, model: ModelConfig, keyed: str, body: bytes) -> Finding:
    check = f"model {name}"
    try:
        listed = {item.id for item in MODEL_LIST.decode(body).data}
    except msgspec.DecodeError:
        found = f"{model.base_url} {keyed}, but its /models is not a model list"
        return warned(check, found, f"check models.{name}.base_url")
    if model.model not in listed:
        found = f"{model.base_url} {keyed}, but does not list {model.model!r}"
        return warned(check, found, f"check models.{name}.model (the provider's model id)")
    return passed(check, f"{model.base_url} {keyed} and serves {model.model!r}")


def codex_finding(name: str, model: ModelConfig) -> Finding:
    """The auth file `codex login` wrote, read here (the session reads it on its own host)."""
    check, path = f"model {name}", os.path.expanduser(model.auth_file)
    try:
        tokens = codex_auth.read_tokens(path)
        codex_auth.credentials_of(tokens, path)
    except AuthError as exc:
        found = str(exc).replace(f": {codex_auth.LOGIN}", "")
        return failed(check, found, "run `codex login` as the session's user on its host")
    if codex_auth.expires_soon(tokens.access_token):
        return passed(check, f"{path}: signed in; the session renews the expired access token")
    return passed(check, f"{path}: signed in")


async def telegram_findings(telegram: TelegramConfig | None) -> list[Finding]:
    """The bot the token belongs to (`getMe`); nothing without a [telegram] section."""
    if telegram is None:
        return []
    base, token = telegram.api_base.rstrip("/"), telegram.bot_token
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.get(f"{base}/bot{token}/getMe")
    except httpx.HTTPError as exc:
        found = redact(f"cannot reach {base}: {type(exc).__name__}: {exc}", token)
        return [failed("telegram", found, "check telegram.api_base and the network")]
    try:
        answer = GET_ME.decode(response.content)
    except msgspec.DecodeError:
        found = f"{base} answered HTTP {response.status_code}, not as the Bot API does"
        return [failed("telegram", found, "check telegram.api_base")]
    if not answer.ok or answer.result is None:
        said = redact(f"{answer.error_code or response.status_code} {answer.description}", token)
        found = f"{base} refused telegram.bot_token ({said.strip()})"
        return [failed("telegram", found, "put the token @BotFather gave into telegram.bot_token")]
    bot = answer.result
    return [passed("telegram", f"the token belongs to @{bot.username} (bot {bot.id})")]

"""The agent's client for the engine in its pod: vLLM's runtime LoRA API and ``/v1/models``.

vLLM and the reference engine answer the same calls the same way, so nothing here depends on
which one runs. Success of a load or unload is a 200 with a plain-text body; errors carry
vLLM's JSON error (nested or, before late 2025, flat), whose message is passed on verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import httpx

from kubetune.serving.protocol import error_message


class EngineUnavailableError(Exception):
    """The engine did not answer (starting, restarting or overloaded): try again later."""


class EngineRefusedError(Exception):
    """The engine answered a load or unload with an error; the message is the engine's."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class EngineModels:
    base: str | None
    adapters: dict[str, str | None]  # adapter name -> root (its path)


class EngineClient:
    def __init__(self, base_url: str, *, timeout: float = 120.0) -> None:
        # A load of a large adapter can take a while on a busy engine; a connect cannot.
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout, connect=5.0)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def models(self) -> EngineModels:
        try:
            response = await self._http.get("/v1/models", timeout=5.0)
        except httpx.HTTPError as err:
            raise EngineUnavailableError(f"GET /v1/models: {err!r}") from err
        if response.status_code != HTTPStatus.OK:
            raise EngineUnavailableError(f"GET /v1/models answered {response.status_code}")
        base: str | None = None
        adapters: dict[str, str | None] = {}
        for card in response.json().get("data", []):
            # LoRA cards carry their base model as parent; the base model card has none.
            if card.get("parent"):
                adapters[str(card["id"])] = card.get("root")
            elif base is None:
                base = str(card["id"])
        return EngineModels(base=base, adapters=adapters)

    async def load(self, name: str, path: str) -> None:
        response = await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if response.status_code == HTTPStatus.OK:
            return
        message = error_message(response.content)
        # Versioned names are never reused for other bytes, so "already loaded" (a load whose
        # answer we lost, or one still in progress) means the version we want is there.
        if response.status_code == HTTPStatus.BAD_REQUEST and (
            "already been loaded" in message or name in (await self.models()).adapters
        ):
            return
        if response.status_code == HTTPStatus.NOT_FOUND and message == "Not Found":
            message = (
                "the engine has no /v1/load_lora_adapter endpoint: start vLLM with "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora"
            )
        raise EngineRefusedError(message, status=response.status_code)

    async def unload(self, name: str) -> None:
        response = await self._post("/v1/unload_lora_adapter", {"lora_name": name})
        # 404: the engine does not know it (any more), which is what we wanted.
        if response.status_code in (HTTPStatus.OK, HTTPStatus.NOT_FOUND):
            return
        raise EngineRefusedError(error_message(response.content), status=response.status_code)

    async def _post(self, path: str, body: dict[str, str]) -> httpx.Response:
        try:
            return await self._http.post(path, json=body)
        except httpx.HTTPError as err:
            raise EngineUnavailableError(f"POST {path}: {err!r}") from err

"""Agent frameworks against the demo gateway (the built-in default config, mock model), as
docs/agents.md shows them: the OpenAI Agents SDK (Responses and Chat Completions, the slash-free
alias and the two ways through for ``mock/echo``), instructor's TOOLS mode and langchain-openai's
``with_structured_output``. No network beyond loopback; the Agents SDK's tracing export is off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from gateway.app import create_app
from gateway.config import DEMO_KEY, default_config
from tests.support.servers import ServerThread

agents = pytest.importorskip("agents")


class User(BaseModel):
    name: str
    age: int = Field(ge=0, le=130)
    role: Literal["admin", "user"]


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    """The gateway as ``switchyard serve`` runs it without a config; its /v1 base URL."""
    with ServerThread(create_app(default_config())) as srv:
        yield srv.url + "/v1"


@pytest.fixture(scope="module", autouse=True)
def no_tracing() -> Iterator[None]:
    agents.set_tracing_disabled(True)  # the SDK would export traces to OpenAI's servers
    yield
    agents.set_tracing_disabled(False)


@agents.function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny in {city}."


def _run(model: object, run_config: object | None = None, streamed: bool = False) -> object:
    agent = agents.Agent(name="assistant", instructions="Answer briefly.", tools=[get_weather], model=model)
    question = "Use get_weather for Paris"
    if not streamed:
        return agents.Runner.run_sync(agent, question, run_config=run_config)

    async def run() -> object:
        result = agents.Runner.run_streamed(agent, question, run_config=run_config)
        async for _ in result.stream_events():
            pass
        return result

    return asyncio.run(run())


def _check(result: object) -> None:
    kinds = [type(i).__name__ for i in result.new_items]  # type: ignore[attr-defined]
    assert kinds == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]
    # The mock called the tool, then answered with its output.
    assert result.final_output == "Sunny in Use get_weather for Paris."  # type: ignore[attr-defined]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("use_responses", [True, False], ids=["responses", "chat_completions"])
def test_agents_sdk_with_the_slash_free_alias(demo: str, use_responses: bool, streamed: bool) -> None:
    client = openai.AsyncOpenAI(base_url=demo, api_key=DEMO_KEY)
    provider = agents.OpenAIProvider(openai_client=client, use_responses=use_responses)
    _check(_run("echo", agents.RunConfig(model_provider=provider), streamed))


def test_agents_sdk_refuses_a_slashed_name_by_default(demo: str) -> None:
    client = openai.AsyncOpenAI(base_url=demo, api_key=DEMO_KEY)
    provider = agents.MultiProvider(openai_client=client)
    with pytest.raises(agents.exceptions.UserError, match="Unknown prefix: mock"):
        _run("mock/echo", agents.RunConfig(model_provider=provider))


def test_agents_sdk_with_unknown_prefix_mode(demo: str) -> None:
    client = openai.AsyncOpenAI(base_url=demo, api_key=DEMO_KEY)
    provider = agents.MultiProvider(openai_client=client, unknown_prefix_mode="model_id")
    _check(_run("mock/echo", agents.RunConfig(model_provider=provider)))


@pytest.mark.parametrize("kind", ["OpenAIResponsesModel", "OpenAIChatCompletionsModel"])
def test_agents_sdk_with_a_model_object(demo: str, kind: str) -> None:
    client = openai.AsyncOpenAI(base_url=demo, api_key=DEMO_KEY)
    _check(_run(getattr(agents, kind)(model="mock/echo", openai_client=client)))


def test_instructor_tools_mode(demo: str) -> None:
    instructor = pytest.importorskip("instructor")
    client = instructor.from_openai(openai.OpenAI(base_url=demo, api_key=DEMO_KEY), mode=instructor.Mode.TOOLS)
    user = client.chat.completions.create(
        model="mock/echo", response_model=User, messages=[{"role": "user", "content": "Jason is 25"}]
    )
    assert user.model_dump() == {"name": "Jason is 25", "age": 1, "role": "admin"}


def test_instructor_json_schema_mode(demo: str) -> None:
    instructor = pytest.importorskip("instructor")
    client = instructor.from_openai(openai.OpenAI(base_url=demo, api_key=DEMO_KEY), mode=instructor.Mode.JSON_SCHEMA)
    user = client.chat.completions.create(
        model="echo", response_model=User, messages=[{"role": "user", "content": "Jason is 25"}]
    )
    assert isinstance(user, User)


@pytest.mark.parametrize("method", [None, "function_calling", "json_schema"])
def test_langchain_with_structured_output(demo: str, method: str | None) -> None:
    lc = pytest.importorskip("langchain_openai")
    llm = lc.ChatOpenAI(model="mock/echo", base_url=demo, api_key=DEMO_KEY, max_retries=0)
    structured = llm.with_structured_output(User) if method is None else llm.with_structured_output(User, method=method)
    assert structured.invoke("Jason is 25") == User(name="Jason is 25", age=1, role="admin")


def test_langchain_tool_calling_and_streaming(demo: str) -> None:
    lc = pytest.importorskip("langchain_openai")
    llm = lc.ChatOpenAI(model="echo", base_url=demo, api_key=DEMO_KEY, max_retries=0)
    (call,) = llm.bind_tools([User]).invoke("make a User").tool_calls
    assert call["name"] == "User" and User.model_validate(call["args"])
    assert "".join(str(c.content) for c in llm.stream("one two three")) == "one two three"

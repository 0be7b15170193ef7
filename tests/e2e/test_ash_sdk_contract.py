"""The contract with the PyPI `ash-ai-sdk` (pinned in pyproject): every call of its generated low-level client
(generated from the reference server's OpenAPI) against a real server with the fake model answers with a success
status and parses into the model the SDK declares for it. A call that came back as `ApiError`, `None` or a parse
failure (the SDK's `from_dict` raises on a wrong shape) fails here."""

from __future__ import annotations

import base64
import io
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from ash_sdk.api.agents import (
    delete_api_agents_name,
    get_api_agents,
    get_api_agents_name,
    get_api_agents_name_files,
    post_api_agents,
)
from ash_sdk.api.attachments import delete_api_attachments_id, get_api_attachments_id
from ash_sdk.api.credentials import delete_api_credentials_id, get_api_credentials, post_api_credentials
from ash_sdk.api.health import get_health
from ash_sdk.api.queue import delete_api_queue_id, get_api_queue, get_api_queue_id, get_api_queue_stats, post_api_queue
from ash_sdk.api.sessions import (
    delete_api_sessions_id,
    get_api_sessions,
    get_api_sessions_id,
    get_api_sessions_id_attachments,
    get_api_sessions_id_events,
    get_api_sessions_id_files,
    get_api_sessions_id_logs,
    get_api_sessions_id_messages,
    get_api_sessions_id_workspace,
    patch_api_sessions_id_config,
    post_api_sessions,
    post_api_sessions_id_attachments,
    post_api_sessions_id_exec,
    post_api_sessions_id_files,
    post_api_sessions_id_fork,
    post_api_sessions_id_messages,
    post_api_sessions_id_pause,
    post_api_sessions_id_resume,
    post_api_sessions_id_stop,
    post_api_sessions_id_workspace,
)
from ash_sdk.api.usage import get_api_usage, get_api_usage_stats
from ash_sdk.client import AuthenticatedClient
from ash_sdk.models import (
    DeleteApiAgentsNameResponse200,
    DeleteApiQueueIdResponse200,
    DeleteApiSessionsIdResponse200,
    GetApiAgentsNameFilesResponse200,
    GetApiAgentsNameResponse200,
    GetApiAgentsResponse200,
    GetApiCredentialsResponse200,
    GetApiQueueIdResponse200,
    GetApiQueueResponse200,
    GetApiQueueStatsResponse200,
    GetApiSessionsIdAttachmentsResponse200,
    GetApiSessionsIdEventsResponse200,
    GetApiSessionsIdFilesResponse200,
    GetApiSessionsIdLogsResponse200,
    GetApiSessionsIdMessagesResponse200,
    GetApiSessionsIdResponse200,
    GetApiSessionsResponse200,
    GetApiUsageResponse200,
    GetApiUsageStatsResponse200,
    HealthResponse,
    PatchApiSessionsIdConfigBody,
    PatchApiSessionsIdConfigResponse200,
    PostApiAgentsBody,
    PostApiAgentsResponse201,
    PostApiCredentialsBody,
    PostApiCredentialsResponse201,
    PostApiQueueBody,
    PostApiQueueResponse201,
    PostApiSessionsBody,
    PostApiSessionsIdAttachmentsBody,
    PostApiSessionsIdAttachmentsResponse201,
    PostApiSessionsIdExecBody,
    PostApiSessionsIdExecResponse200,
    PostApiSessionsIdFilesBody,
    PostApiSessionsIdFilesBodyFilesItem,
    PostApiSessionsIdForkResponse201,
    PostApiSessionsIdMessagesBody,
    PostApiSessionsIdPauseResponse200,
    PostApiSessionsIdResumeResponse200,
    PostApiSessionsIdStopResponse200,
    PostApiSessionsIdWorkspaceBody,
    PostApiSessionsIdWorkspaceResponse200,
    PostApiSessionsResponse201,
)
from ash_sdk.types import Response

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow


def ok(response: Response[Any], model: type | None, status: int = 200) -> Any:
    """The call answered `status` and its body parsed into `model` (None: a body the SDK does not parse)."""
    assert response.status_code == status, response.content[:500]
    if model is not None:
        assert isinstance(response.parsed, model), (type(response.parsed), response.content[:500])
    return response.parsed


@pytest.fixture(scope="module")
def ash_server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    """One server for the module, with credential storage configured (the credential calls need it)."""
    # No queue worker: queued items stay pending, so the cancel call has one to cancel (tests/api/test_queue.py
    # runs the worker).
    env = {"ASH_CREDENTIAL_KEY": "contract-credential-key-0123456789", "ASH_QUEUE_CONCURRENCY": "0"}
    with AshServer(fake_model.url, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def api(ash_server: AshServer) -> Iterator[AuthenticatedClient]:
    with AuthenticatedClient(base_url=ash_server.url, token=ash_server.api_key) as c:
        yield c


@pytest.fixture(scope="module")
def session_id(api: AuthenticatedClient, fake_model: FakeAnthropic) -> uuid.UUID:
    """A session of a deployed agent with one finished turn, shared by the tests of this module."""
    fake_model.on("contract turn", text("Contract answer."))
    ok(
        post_api_agents.sync_detailed(
            client=api, body=PostApiAgentsBody(name="contract", path=str(REPO / "examples" / "hello-agent"))
        ),
        PostApiAgentsResponse201,
        201,
    )
    created = ok(
        post_api_sessions.sync_detailed(client=api, body=PostApiSessionsBody(agent="contract")),
        PostApiSessionsResponse201,
        201,
    )
    sid = uuid.UUID(str(created.session.id))
    # The generated `post_api_sessions_id_messages.sync` calls `response.json()` on the SSE body, so it fails on
    # every server that streams (the reference's too); the SDK's own streaming client does the parsing. The request
    # is the generated one, sent as it builds it.
    kwargs = post_api_sessions_id_messages._get_kwargs(sid, body=PostApiSessionsIdMessagesBody(content="contract turn"))
    stream = api.get_httpx_client().request(**kwargs)
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert b"event: done" in stream.content and b"Contract answer." in stream.content
    return sid


def test_health_and_agents(api: AuthenticatedClient, session_id: uuid.UUID) -> None:
    health = ok(get_health.sync_detailed(client=api), HealthResponse)
    assert health.status == "ok" and isinstance(health.uptime, int)
    agents = ok(get_api_agents.sync_detailed(client=api), GetApiAgentsResponse200)
    assert "contract" in [a.name for a in agents.agents]
    agent = ok(get_api_agents_name.sync_detailed("contract", client=api), GetApiAgentsNameResponse200)
    assert agent.agent.name == "contract"
    files = ok(get_api_agents_name_files.sync_detailed("contract", client=api), GetApiAgentsNameFilesResponse200)
    assert "CLAUDE.md" in [f.path for f in files.files]
    ok(
        post_api_agents.sync_detailed(
            client=api, body=PostApiAgentsBody(name="contract-gone", system_prompt="You are brief.")
        ),
        PostApiAgentsResponse201,
        201,
    )
    ok(delete_api_agents_name.sync_detailed("contract-gone", client=api), DeleteApiAgentsNameResponse200)


def test_session_reads(api: AuthenticatedClient, session_id: uuid.UUID) -> None:
    listed = ok(get_api_sessions.sync_detailed(client=api, agent="contract"), GetApiSessionsResponse200)
    assert str(session_id) in [str(s.id) for s in listed.sessions]
    one = ok(get_api_sessions_id.sync_detailed(session_id, client=api), GetApiSessionsIdResponse200)
    assert one.session.agent_name == "contract"
    messages = ok(
        get_api_sessions_id_messages.sync_detailed(session_id, client=api), GetApiSessionsIdMessagesResponse200
    )
    assert len(messages.messages) >= 2
    # Every event type the server records parses into the SDK's enum (a `usage` type once made it raise).
    events = ok(get_api_sessions_id_events.sync_detailed(session_id, client=api), GetApiSessionsIdEventsResponse200)
    assert {"lifecycle", "text", "turn_complete"} <= {str(e.type_) for e in events.events}
    ok(get_api_sessions_id_logs.sync_detailed(session_id, client=api), GetApiSessionsIdLogsResponse200)  # after=-1
    ok(get_api_usage.sync_detailed(client=api, session_id=session_id), GetApiUsageResponse200)
    ok(get_api_usage_stats.sync_detailed(client=api), GetApiUsageStatsResponse200)


def test_session_files_exec_and_workspace(api: AuthenticatedClient, session_id: uuid.UUID) -> None:
    upload = PostApiSessionsIdFilesBody(
        files=[PostApiSessionsIdFilesBodyFilesItem(path="notes/a.txt", content=base64.b64encode(b"alpha").decode())]
    )
    ok(post_api_sessions_id_files.sync_detailed(session_id, client=api, body=upload), None)
    files = ok(get_api_sessions_id_files.sync_detailed(session_id, client=api), GetApiSessionsIdFilesResponse200)
    assert "notes/a.txt" in [f.path for f in files.files]
    ran = ok(
        post_api_sessions_id_exec.sync_detailed(
            session_id, client=api, body=PostApiSessionsIdExecBody(command="cat notes/a.txt")
        ),
        PostApiSessionsIdExecResponse200,
    )
    assert ran.stdout == "alpha" and ran.exit_code == 0
    workspace = get_api_sessions_id_workspace.sync_detailed(session_id, client=api)
    assert workspace.status_code == 200  # the SDK declares no 200 body: the tar.gz is read as it comes
    with tarfile.open(fileobj=io.BytesIO(workspace.content), mode="r:gz") as tar:
        assert any(name.endswith("notes/a.txt") for name in tar.getnames())
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w:gz") as tar:
        data = b"from a bundle"
        info = tarfile.TarInfo("bundled.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    ok(
        post_api_sessions_id_workspace.sync_detailed(
            session_id,
            client=api,
            body=PostApiSessionsIdWorkspaceBody(bundle=base64.b64encode(bundle.getvalue()).decode()),
        ),
        PostApiSessionsIdWorkspaceResponse200,
    )


def test_session_lifecycle(api: AuthenticatedClient, session_id: uuid.UUID) -> None:
    ok(
        patch_api_sessions_id_config.sync_detailed(
            session_id, client=api, body=PatchApiSessionsIdConfigBody(allowed_tools=["Read"])
        ),
        PatchApiSessionsIdConfigResponse200,
    )
    ok(post_api_sessions_id_pause.sync_detailed(session_id, client=api), PostApiSessionsIdPauseResponse200)
    ok(post_api_sessions_id_resume.sync_detailed(session_id, client=api), PostApiSessionsIdResumeResponse200)
    ok(post_api_sessions_id_stop.sync_detailed(session_id, client=api), PostApiSessionsIdStopResponse200)
    fork = ok(post_api_sessions_id_fork.sync_detailed(session_id, client=api), PostApiSessionsIdForkResponse201, 201)
    ok(delete_api_sessions_id.sync_detailed(fork.session.id, client=api), DeleteApiSessionsIdResponse200)


def test_credentials(api: AuthenticatedClient) -> None:
    body = PostApiCredentialsBody(type_="anthropic", key="sk-ant-contract-0123456789")
    created = ok(post_api_credentials.sync_detailed(client=api, body=body), PostApiCredentialsResponse201, 201)
    listed = ok(get_api_credentials.sync_detailed(client=api), GetApiCredentialsResponse200)
    assert created.credential.id in [c.id for c in listed.credentials]
    ok(delete_api_credentials_id.sync_detailed(str(created.credential.id), client=api), None, 204)


def test_attachments(api: AuthenticatedClient, session_id: uuid.UUID) -> None:
    body = PostApiSessionsIdAttachmentsBody(filename="notes.txt", content=base64.b64encode(b"attached").decode())
    created = ok(
        post_api_sessions_id_attachments.sync_detailed(session_id, client=api, body=body),
        PostApiSessionsIdAttachmentsResponse201,
        201,
    )
    attachment_id = uuid.UUID(str(created.attachment.id))
    listed = ok(
        get_api_sessions_id_attachments.sync_detailed(session_id, client=api), GetApiSessionsIdAttachmentsResponse200
    )
    assert attachment_id in [uuid.UUID(str(a.id)) for a in listed.attachments]
    downloaded = get_api_attachments_id.sync_detailed(attachment_id, client=api)
    assert downloaded.status_code == 200 and downloaded.content == b"attached"  # the SDK declares no 200 body
    ok(delete_api_attachments_id.sync_detailed(attachment_id, client=api), None, 204)


def test_queue(api: AuthenticatedClient, session_id: uuid.UUID) -> None:
    body = PostApiQueueBody(agent_name="contract", prompt="queued contract prompt")
    created = ok(post_api_queue.sync_detailed(client=api, body=body), PostApiQueueResponse201, 201)
    item_id = uuid.UUID(str(created.item.id))
    listed = ok(get_api_queue.sync_detailed(client=api), GetApiQueueResponse200)
    assert item_id in [uuid.UUID(str(i.id)) for i in listed.items]
    one = ok(get_api_queue_id.sync_detailed(item_id, client=api), GetApiQueueIdResponse200)
    assert str(one.item.status) == "pending"
    stats = ok(get_api_queue_stats.sync_detailed(client=api), GetApiQueueStatsResponse200)
    assert stats.stats.pending >= 1
    cancelled = ok(delete_api_queue_id.sync_detailed(item_id, client=api), DeleteApiQueueIdResponse200)
    assert str(cancelled.item.status) == "cancelled"

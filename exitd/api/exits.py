"""barkd's `exits` tag: start, progress, status, claim, and 0.6.0's cancel and status listings."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from exitd.api.context import Services, services_of
from exitd.api.errors import (
    BadRequest,
    NotFound,
    json_body,
    json_body_response,
    json_response,
    read_body,
    read_json_object,
)
from exitd.api.onchain import whole_number
from exitd.api.shapes import (
    V060,
    error_json,
    fee_info_json,
    history_json,
    origin_json,
    shown,
    state_json,
)
from exitd.api.wallet import parse_bool_field, parse_bool_query
from exitd.chain.fees import sat_per_vb_ceil
from exitd.engine.admission import refusal, refusal_reason
from exitd.engine.engine import ExitEngine
from exitd.engine.fee_policy import RaisedRate
from exitd.engine.model import LiveExit, ProgressReport
from exitd.engine.outcomes import ClaimBroadcast, StartReport
from exitd.engine.states import ExitState
from exitd.store.vtxos import StoredVtxo
from exitd.wallet.address import decode_address
from exitd.wallet.planner import FundingOutlook
from exitd.wallet.vtxos import parse_vtxo_id

MAX_FEE_RATE = 10_000_000  # sat/kvB (10,000 sat/vB): anything above is a typo, not a fee market


def _engine(request: web.Request) -> ExitEngine:
    return services_of(request).engine


def _vocabulary(request: web.Request) -> str:
    return services_of(request).config.api_vocabulary


def parse_fee_rate(body: dict[str, Any]) -> int | None:
    value = body.get("fee_rate")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("'fee_rate' must be an integer in sat/kvB")
    if not 0 <= value <= MAX_FEE_RATE:
        raise BadRequest(f"'fee_rate' must be between 0 and {MAX_FEE_RATE} sat/kvB, got {value}")
    return value


def raised_rate_json(raised: RaisedRate | None) -> dict[str, Any] | None:
    """Extra field `fee_rate_raised`: the request's fee_rate was below the node's floor, which was paid."""
    if raised is None:
        return None
    return {"requested": raised.requested, "paid": raised.floor}


def parse_vtxo_ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("vtxos")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest("'vtxos' must be a list of VTXO ids ('<txid>:<vout>')")
    if not ids:
        raise BadRequest("no VTXO ids given")
    return list(dict.fromkeys(parse_vtxo_id(i) for i in ids))


def exit_status_json(
    engine: ExitEngine,
    e: LiveExit,
    state: ExitState,
    fees_paid: int,
    history: list[ExitState] | None,
    transactions: bool,
    vocab: str,
) -> dict[str, Any]:
    """barkd's ExitTransactionStatus, plus `started_by`, `fees_paid_sat`, `error` and `fee_rate_raised`
    (extra fields; `error` is the exit's last error as in a progress answer, so a status read shows it
    without running a cycle). `state` is the exit's state as taken before its history was read: a cycle
    may move the exit meanwhile, and its new state must not be shown beside the history before it."""
    doc: dict[str, Any] = {"vtxo_id": e.vtxo_id, "state": state_json(state, vocab)}
    if history is not None:
        doc["history"] = history_json(history, vocab)
    if transactions:
        packages = []
        for tracked, child, origin in engine.packages(e):
            child_doc: dict[str, Any] | None = None
            if child is not None and origin is not None:
                child_doc = {
                    "info": {"txid": child.txid, "tx": child.raw.hex()},
                    "origin": origin_json(origin, vocab),
                }
                if vocab == V060:
                    child_doc["fee_info"] = fee_info_json(origin, child.fee, child.package_rate)
            packages.append({"exit": {"txid": tracked.txid, "tx": tracked.raw.hex()}, "child": child_doc})
        if packages:
            doc["transactions"] = packages
    doc["started_by"] = e.started_by
    doc["fees_paid_sat"] = fees_paid
    doc["error"] = error_json(e.error, vocab) if e.error else None
    doc["fee_rate_raised"] = raised_rate_json(e.raised_rate)
    return doc


# The plain listing's body by (which, vocabulary), with the engine version it was rendered at. Clients
# poll it far more often than exits change: at a thousand exits a rendering holds the event loop for tens
# of ms, and fifty clients between two cycles would queue fifty of them.
StatusListings = dict[tuple[str, str], tuple[int, bytes]]
STATUS_LISTINGS = web.AppKey("status_listings", StatusListings)
# Exits rendered per write of a listing with histories or transactions: those listings are tens of MB at
# thousands of exits (asked for now and then, not polled), so they are streamed, never held whole.
STATUS_STREAM_CHUNK = 200


def _listed(engine: ExitEngine, which: str, vocab: str) -> list[LiveExit]:
    exits = [e for e in engine.exits.values() if shown(e.state, vocab)]
    if which == "live":
        return [e for e in exits if not e.state.kind.is_finished]
    if which == "finished":
        return [e for e in exits if e.state.kind.is_finished]
    return exits


async def _statuses(request: web.Request, which: str) -> web.StreamResponse:
    engine = _engine(request)
    history = parse_bool_query(request, "history")
    transactions = parse_bool_query(request, "transactions")
    vocab = _vocabulary(request)
    if history or transactions:
        return await _stream_statuses(request, _listed(engine, which, vocab), history, transactions, vocab)
    listings = request.app[STATUS_LISTINGS]
    version = engine.version
    cached = listings.get((which, vocab))
    if cached is None or cached[0] != version:
        exits = _listed(engine, which, vocab)
        paid = engine.fees_paid_each(exits)
        docs = [exit_status_json(engine, e, e.state, paid[e.vtxo_id], None, False, vocab) for e in exits]
        body = json_body(docs)
        cached = listings[(which, vocab)] = (version, body)
    return json_body_response(cached[1])


async def _stream_statuses(
    request: web.Request, exits: list[LiveExit], history: bool, transactions: bool, vocab: str
) -> web.StreamResponse:
    engine = _engine(request)
    paid = engine.fees_paid_each(exits)
    response = web.StreamResponse()
    response.content_type, response.charset = "application/json", "utf-8"
    await response.prepare(request)
    await response.write(b"[")
    for first in range(0, len(exits), STATUS_STREAM_CHUNK):
        chunk = exits[first : first + STATUS_STREAM_CHUNK]
        states = [e.state for e in chunk]
        histories = await engine.histories([e.vtxo_id for e in chunk]) if history else {}
        docs = (
            exit_status_json(
                engine,
                e,
                state,
                paid[e.vtxo_id],
                histories.get(e.vtxo_id, []) if history else None,
                transactions,
                vocab,
            )
            for e, state in zip(chunk, states, strict=True)
        )
        await response.write((b"," if first else b"") + b",".join(json_body(doc) for doc in docs))
    await response.write(b"]")
    await response.write_eof()
    return response


async def status_all(request: web.Request) -> web.StreamResponse:
    return await _statuses(request, "all")


async def status_all_deprecated(request: web.Request) -> web.StreamResponse:
    """0.1.4's listing; barkd 0.6.0 moved it to /status/all and answers here with a permanent redirect."""
    if _vocabulary(request) == V060:
        location = request.rel_url.with_path("/api/v1/exits/status/all").with_query(request.query)
        return web.Response(status=308, headers={"Location": str(location)})
    return await _statuses(request, "all")


async def status_live(request: web.Request) -> web.StreamResponse:
    return await _statuses(request, "live")


async def status_finished(request: web.Request) -> web.StreamResponse:
    return await _statuses(request, "finished")


async def status_one(request: web.Request) -> web.Response:
    engine = _engine(request)
    vtxo_id = parse_vtxo_id(request.match_info["vtxo_id"])
    vocab = _vocabulary(request)
    e = engine.exits.get(vtxo_id)
    if e is None or not shown(e.state, vocab):
        raise NotFound(f"no exit for VTXO {vtxo_id}", [vtxo_id])
    state = e.state
    history = (await engine.histories([vtxo_id]))[vtxo_id] if parse_bool_query(request, "history") else None
    doc = exit_status_json(
        engine,
        e,
        state,
        engine.fees_paid(e),
        history,
        parse_bool_query(request, "transactions"),
        vocab,
    )
    return json_response(doc)


async def start_vtxos(request: web.Request) -> web.Response:
    """barkd's start, and exitd's `force` (extra): start even an exit not worth it, too late or unfunded."""
    body = await read_json_object(request)
    ids = parse_vtxo_ids(body)
    report = await _engine(request).start(ids, force=parse_bool_field(body, "force"))
    return json_response(start_json(report))


async def start_all(request: web.Request) -> web.Response:
    """Every spendable VTXO but those not worth exiting or too late (unless `force`): `skipped` names them."""
    body = await read_json_object(request) if request.can_read_body else {}
    return json_response(
        start_json(await _engine(request).start(None, force=parse_bool_field(body, "force")))
    )


# Each cycle's report rendered once per vocabulary: every caller of a cycle shares its report, and fifty
# callers rendering a thousand exits each held the event loop longer than the cycle itself.
ProgressBodies = weakref.WeakKeyDictionary[ProgressReport, dict[str, bytes]]
PROGRESS_BODIES = web.AppKey("progress_bodies", ProgressBodies)


def progress_json(report: ProgressReport, vocab: str) -> dict[str, Any]:
    return {
        "exits": [
            {
                "vtxo_id": e.vtxo_id,
                "state": state_json(e.state, vocab),
                "error": error_json(e.error, vocab) if e.error else None,
                "fee_rate_raised": raised_rate_json(e.raised_rate),
            }
            for e in report.exits
        ],
        "done": report.done,
        "claimable_height": report.claimable_height,
    }


async def progress(request: web.Request) -> web.Response:
    """One cycle now; with `wait: true`, a cycle per new block until every exit is done or the client
    goes away (barkd accepts `wait` and ignores it)."""
    raw = await read_body(request)
    body = await read_json_object(request) if raw.strip() else {}
    fee_rate = parse_fee_rate(body)
    wait = body.get("wait")
    if wait is not None and not isinstance(wait, bool):
        raise BadRequest("'wait' must be true or false")
    engine = _engine(request)
    report = await engine.progress(fee_rate)
    while wait and not report.done:
        if request.transport is None or request.transport.is_closing():
            break
        await engine.wait_for_block(timeout=5.0)
        report = await engine.progress(fee_rate)
    vocab = _vocabulary(request)
    bodies = request.app[PROGRESS_BODIES].setdefault(report, {})
    if vocab not in bodies:
        bodies[vocab] = json_body(progress_json(report, vocab))
    return json_body_response(bodies[vocab])


def _destination(request: web.Request, body: dict[str, Any]) -> bytes:
    destination = body.get("destination")
    if not isinstance(destination, str) or not destination.strip():
        raise BadRequest("'destination' must be a bitcoin address")
    return decode_address(destination.strip(), services_of(request).config.network)


def _preimages(body: dict[str, Any]) -> dict[str, bytes]:
    """Optional extra field `preimages`: {vtxo_id: hex} for HTLC-receive VTXOs."""
    raw = body.get("preimages") or {}
    if not isinstance(raw, dict):
        raise BadRequest("'preimages' must map VTXO ids to 32-byte hex preimages")
    result: dict[str, bytes] = {}
    for vtxo_id, value in raw.items():
        try:
            preimage = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            preimage = b""
        if len(preimage) != 32:
            raise BadRequest(f"preimage for {vtxo_id} must be 32 bytes of hex")
        result[parse_vtxo_id(vtxo_id)] = preimage
    return result


def start_json(report: StartReport) -> dict[str, Any]:
    """barkd's ExitStartResponse, plus what the start did (extra fields): `started` (every exit it
    began), `restarted` (those of them that had been cancelled) and `skipped` (each VTXO that did not start,
    and why)."""
    return {
        "message": "Exit started successfully",
        "started": list(report.started),
        "restarted": list(report.restarted),
        "skipped": [{"vtxo_id": vtxo_id, "reason": reason} for vtxo_id, reason in report.skipped],
    }


def claim_json(claim: ClaimBroadcast) -> dict[str, Any]:
    """barkd's ExitClaimResponse, plus what the claim tx spent and paid (extra fields, so a client can say
    what happened): `txid`, `vtxos` (the exits it claims), `amount_sat` (what they held), `fee_sat` and
    `skipped` (each claimable exit a claim of all left out, its claim not signable here, and why), and
    `refused`: the node's answer when it refused the claim for its fee (null when it took it); the exits
    are claim-in-progress all the same, and exitd sends the claim again, repriced, on a later block."""
    message = "Exit claimed successfully"
    if claim.refused is not None:
        message = (
            f"Exit claim stored; bitcoind refused it for its fee ({claim.refused}): exitd sends it again, "
            "repriced, on the next block"
        )
    return {
        "message": message,
        "txid": claim.txid,
        "vtxos": list(claim.vtxo_ids),
        "amount_sat": claim.amount,
        "fee_sat": claim.fee,
        "skipped": [{"vtxo_id": e.fields["vtxo"], "reason": str(e)} for e in claim.skipped],
        "refused": claim.refused,
    }


async def claim_vtxos(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    destination = _destination(request, body)
    ids = parse_vtxo_ids(body)
    fee_rate = parse_fee_rate(body)
    await services_of(request).vtxos.get_many(ids)
    claim = await _engine(request).claim(ids, destination, fee_rate, _preimages(body))
    return json_response(claim_json(claim))


async def claim_all(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    destination = _destination(request, body)
    claim = await _engine(request).claim(None, destination, parse_fee_rate(body), _preimages(body))
    return json_response(claim_json(claim))


# A placeholder destination of each network, weighed when the estimate names none: a P2TR output is what
# exitd's own wallet receives to.
PLACEHOLDER_DESTINATION = bytes.fromhex("5120") + bytes(32)


def _query_fee_rate(request: web.Request) -> int | None:
    raw = request.query.get("fee_rate_sat_per_vb")
    if raw is None or raw == "":
        return None
    rate = whole_number(raw, "'fee_rate_sat_per_vb'")
    if not 0 <= rate <= MAX_FEE_RATE // 1000:
        raise BadRequest(f"'fee_rate_sat_per_vb' must be an integer from 0 to {MAX_FEE_RATE // 1000}")
    return rate * 1000


def funding_json(outlook: FundingOutlook) -> dict[str, Any]:
    """The wallet's funding plan (exitd/wallet/planner.py) for the exits in flight and the estimated ones:
    the coins it needs and has, and the blocks this wallet costs beyond one level per block."""
    return {
        "blocks_needed": outlook.blocks_needed,
        "extra_blocks": outlook.extra_blocks,
        "coins_needed": outlook.coins_needed,
        "coin_size_sat": outlook.coin_size,
        "coins_available": outlook.coins_available,
        "coins_arriving": outlook.coins_arriving,
        "missing_sat": outlook.missing,
        "split_txid": outlook.split_txid,
    }


async def fee_estimate(request: web.Request) -> web.Response:
    """barkd 0.6.0's emergency-exit estimate: the CPFP packages still to broadcast and one batched claim;
    plus `funding` (an extra field): the funding plan for these VTXOs and the exits in flight."""
    services = services_of(request)
    raw_ids = request.query.get("vtxo_ids")
    if raw_ids:
        # Unknown ids are bad input to this query (400, as barkd answers), not a missing resource.
        ids = [parse_vtxo_id(i) for i in raw_ids.split(",") if i.strip()]
        found = await services.vtxos.find_many(ids)
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise BadRequest(f"unknown VTXO {', '.join(unknown)}: import it first")
        rows = [found[i] for i in ids]
        finished = [r.vtxo_id for r in rows if r.state == "spent"]
        if finished:
            raise BadRequest(f"VTXO {finished[0]} has already exited")
    else:
        rows = [r for r in await services.vtxos.list(include_spent=False) if r.state == "spendable"]
    destination_text = request.query.get("destination")
    destination = (
        decode_address(destination_text, services.config.network)
        if destination_text
        else PLACEHOLDER_DESTINATION
    )
    balance = await services.wallet.balance()
    verdicts = await _verdicts(services, rows, balance.confirmed)
    estimate = await services.engine.estimate(rows, _query_fee_rate(request), destination, balance.confirmed)
    funding = await services.wallet.funding_outlook(estimate.planned)
    return json_response(
        {
            "exit_broadcast_fee_sat": estimate.exit_broadcast_fee,
            "claim_fee_sat": estimate.claim_fee,
            "total_fee_sat": estimate.exit_broadcast_fee + estimate.claim_fee,
            "fee_rate_sat_per_vb": sat_per_vb_ceil(estimate.fee_rate),
            "txs_to_broadcast": estimate.txs_to_broadcast,
            "fundable": estimate.fundable,
            "funding": funding_json(funding),
            "vtxos": verdicts,
        }
    )


async def _verdicts(services: Services, rows: Sequence[StoredVtxo], confirmed: int) -> list[dict[str, Any]]:
    """exitd's per-VTXO verdict (extra): whether a start would go ahead unforced, or why not; what the
    exit would recover; and what the wallet lacks to pay its first level, and where to send it."""
    admitted = await services.engine.admit(rows)
    floor = services.engine.policy.min_net_recovered
    address = None
    verdicts = []
    for cost in admitted.costs:
        why = refusal(cost, floor)
        missing = max(0, cost.first_level_fee - confirmed)
        if missing and address is None:
            address = await services.wallet.next_address()
        verdicts.append(
            {
                "vtxo_id": cost.vtxo_id,
                "can_start": why is None and not missing,
                "reason": why.value if why else ("unfunded" if missing else None),
                "message": refusal_reason(cost, why, floor) if why else None,
                "amount_sat": cost.amount,
                "cpfp_fee_sat": cost.cpfp_fee,
                "claim_fee_sat": cost.claim_fee,
                "net_recovered_sat": cost.net,
                "blocks_left": cost.blocks_left,
                "blocks_needed": cost.blocks_needed,
                "funding_needed_sat": missing,
                "fund_address": address if missing else None,
            }
        )
    for vtxo_id, why_not in admitted.unexitable.items():
        verdicts.append({"vtxo_id": vtxo_id, "can_start": False, "reason": "unexitable", "message": why_not})
    return verdicts


async def cancel(request: web.Request) -> web.Response:
    vtxo_id = parse_vtxo_id(request.match_info["vtxo_id"])
    await _engine(request).cancel(vtxo_id)
    return json_response({"message": "Exit canceled successfully"})


def add_routes(app: web.Application) -> None:
    app[STATUS_LISTINGS] = {}
    app[PROGRESS_BODIES] = weakref.WeakKeyDictionary()
    app.router.add_get("/api/v1/exits/status", status_all_deprecated)
    app.router.add_get("/api/v1/exits/status/all", status_all)
    app.router.add_get("/api/v1/exits/status/live", status_live)
    app.router.add_get("/api/v1/exits/status/finished", status_finished)
    app.router.add_get("/api/v1/exits/status/vtxo/{vtxo_id}", status_one)
    app.router.add_get("/api/v1/exits/status/{vtxo_id}", status_one)
    app.router.add_post("/api/v1/exits/start/vtxos", start_vtxos)
    app.router.add_post("/api/v1/exits/start/all", start_all)
    app.router.add_post("/api/v1/exits/progress", progress)
    app.router.add_post("/api/v1/exits/claim/vtxos", claim_vtxos)
    app.router.add_post("/api/v1/exits/claim/all", claim_all)
    app.router.add_post("/api/v1/exits/cancel/{vtxo_id}", cancel)
    app.router.add_get("/api/v1/exits/fee", fee_estimate)

"""Sample golden examples: support answers of "Lumen Home Internet", a fictional ISP.

Used by the tests, the demo, the benchmarks and the serving team. Deterministic by seed: the
same seed always gives the same records in the same order. Answers are a function of the
question's slots (plan, router model, city, amount), so a model can really learn them; the
held-out test pairs use slot combinations that never appear in the training file.

    python -m kubetune.trainer.samples --out DIR [--seed 7] [--train 320] [--test 40]

writes ``DIR/train.jsonl`` (chat format) and ``DIR/test.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMPANY = "Lumen Home Internet"
SYSTEM_PROMPT = f"You are the support assistant of {COMPANY}. Answer accurately and kindly."
PLANS = {"Spark 100": 35, "Glow 500": 55, "Beam 1000": 75, "Flare 2000": 95}
SPEEDS = {"Spark 100": 100, "Glow 500": 500, "Beam 1000": 1000, "Flare 2000": 2000}
ROUTERS = ("LH-200", "LH-350", "LH-500 Mesh")
CITIES = (
    "Arden",
    "Bellport",
    "Cedar Falls",
    "Dunmore",
    "Eastwick",
    "Fairhaven",
    "Glenrock",
    "Harrow",
    "Ironvale",
    "Juniper",
    "Kestrel Bay",
    "Lakemont",
    "Millbrook",
    "Northgate",
)
NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonah")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")

Pair = tuple[str, str]


def _router_reset(rng: random.Random) -> Pair:
    router = rng.choice(ROUTERS)
    hold = {"LH-200": 10, "LH-350": 15, "LH-500 Mesh": 20}[router]
    question = rng.choice(
        (
            f"How do I reset my {router} router?",
            f"My {router} keeps dropping the connection. How can I factory reset it?",
            f"What is the way to restart the {router} from scratch?",
        )
    )
    answer = (
        f"To reset the {router}: 1) keep it powered on, 2) press and hold the recessed reset "
        f"button on the back for {hold} seconds with a paperclip, 3) wait until the light turns "
        f"solid white (about two minutes), 4) reconnect with the network name and password "
        f"printed on the label. Your own Wi-Fi settings are erased by a reset."
    )
    if router == "LH-500 Mesh":
        answer += " Reset the main unit first; the satellites rejoin it on their own."
    return question, answer


def _bill(rng: random.Random) -> Pair:
    plan = rng.choice(list(PLANS))
    base = PLANS[plan]
    extra = rng.choice((0, 5, 10, 15))
    month = rng.choice(MONTHS)
    question = f"Why is my {month} bill ${base + extra} on the {plan} plan?"
    if extra == 0:
        answer = f"${base} is the regular monthly price of {plan}; nothing extra was charged."
    else:
        reason = {
            5: "the $5 router rental",
            10: "a $10 late payment fee from the previous month",
            15: "the $15 one-time activation fee",
        }[extra]
        answer = (
            f"{plan} costs ${base} a month. The extra ${extra} on your {month} bill is "
            f"{reason}. You can see each line item under Billing > Statements in the Lumen app."
        )
    return question, answer


def _upgrade(rng: random.Random) -> Pair:
    current, target = rng.sample(list(PLANS), 2)
    question = rng.choice(
        (
            f"Can I switch from {current} to {target}?",
            f"I'd like to change my plan from {current} to {target}. How?",
        )
    )
    diff = PLANS[target] - PLANS[current]
    direction = "more" if diff > 0 else "less"
    answer = (
        f"Yes. {target} is ${PLANS[target]} a month, ${abs(diff)} {direction} than {current}. "
        f"Change it in the Lumen app under Plan > Change plan; the new speed applies within "
        f"an hour and the bill is prorated from today."
    )
    return question, answer


def _outage(rng: random.Random) -> Pair:
    city = rng.choice(CITIES)
    question = rng.choice(
        (f"Is there an outage in {city}?", f"Internet is down in {city}, is it just me?")
    )
    answer = (
        f"Check status.lumen.example for {city}: it lists every known outage with an estimated "
        f"fix time. If {city} shows no outage, restart your router and, if the light stays red, "
        f"reply here and we will open a repair ticket."
    )
    return question, answer


def _moving(rng: random.Random) -> Pair:
    city = rng.choice(CITIES)
    name = rng.choice(NAMES)
    day = rng.randint(1, 28)
    month = rng.choice(MONTHS)
    question = f"Hi, I'm {name}. I'm moving to {city} on {month} {day}. Can I take my service?"
    answer = (
        f"Hi {name}! Yes: open Account > Move service at least 7 days before {month} {day}, "
        f"enter your new address in {city}, and pick an install slot. Moving is free and your "
        f"plan and price stay the same."
    )
    return question, answer


def _speed(rng: random.Random) -> Pair:
    plan = rng.choice(list(PLANS))
    measured = max(5, SPEEDS[plan] // rng.choice((3, 4, 5, 8)))
    question = f"I pay for {plan} but speed tests only show {measured} Mbps. What can I do?"
    answer = (
        f"{plan} delivers up to {SPEEDS[plan]} Mbps on a wired connection. Test with a cable "
        f"plugged into the router: Wi-Fi through walls often gives {measured} Mbps or less. If "
        f"the wired test is also slow, restart the router and run it again; we will send a "
        f"technician if it stays below {SPEEDS[plan] * 8 // 10} Mbps."
    )
    return question, answer


def _short(rng: random.Random) -> Pair:
    return rng.choice(
        (
            (
                "What are your support hours?",
                "Chat and phone support are open every day, 7am to 11pm.",
            ),
            ("Is there a data cap?", "No. Every Lumen plan has unlimited data."),
            ("Do you have a contract?", "No contract: plans are month to month."),
            ("How do I pay my bill?", "Pay in the Lumen app under Billing, or set up autopay."),
            ("Can I keep my own router?", "Yes, any router with an Ethernet WAN port works."),
            ("Where do I see my invoices?", "In the Lumen app under Billing > Statements."),
        )
    )


def _wifi_password(rng: random.Random) -> Pair:
    router = rng.choice(ROUTERS)
    question = f"How do I change the Wi-Fi password on my {router}?"
    answer = (
        f"Open the Lumen app, tap Devices > {router} > Wi-Fi, choose a new password of at least "
        f"12 characters and tap Save. Devices disconnect and must rejoin with the new password."
    )
    return question, answer


TOPICS: tuple[Callable[[random.Random], Pair], ...] = (
    _router_reset,
    _bill,
    _upgrade,
    _outage,
    _moving,
    _speed,
    _short,
    _wifi_password,
)
FOLLOW_UP = (
    "Thanks! How long does that usually take?",
    "It usually takes a few minutes. If anything looks wrong afterwards, reply here.",
)


def _record(rng: random.Random, *, question: str, answer: str) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": SYSTEM_PROMPT})
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if rng.random() < 0.1:
        messages += [
            {"role": "user", "content": FOLLOW_UP[0]},
            {"role": "assistant", "content": FOLLOW_UP[1]},
        ]
    return {"messages": messages}


def generate(
    *, seed: int = 7, train: int = 320, test: int = 40
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train records, held-out test records); no test question appears in train."""
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not secrets
    seen: set[str] = set()
    train_records: list[dict[str, Any]] = []
    test_records: list[dict[str, Any]] = []
    attempts = 0
    while len(test_records) < test and attempts < 100 * (train + test):
        attempts += 1
        question, answer = rng.choice(TOPICS)(rng)
        if question in seen:
            continue
        seen.add(question)
        pair = {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        }
        if len(train_records) < train:
            train_records.append(_record(rng, question=question, answer=answer))
        else:
            test_records.append(pair)
    while len(train_records) < train:
        # Questions from the short topic repeat; allow repeats so any size is reachable.
        question, answer = rng.choice(TOPICS)(rng)
        if question not in {m["messages"][0]["content"] for m in test_records}:
            train_records.append(_record(rng, question=question, answer=answer))
    return train_records, test_records


def corpus(records: list[dict[str, Any]]) -> list[str]:
    """Every text of the records: what the tiny tokenizer is trained on."""
    return [m["content"] for record in records for m in record["messages"]]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def write_samples(out: Path, *, seed: int = 7, train: int = 320, test: int = 40) -> dict[str, Path]:
    train_records, test_records = generate(seed=seed, train=train, test=test)
    return {
        "train": write_jsonl(out / "train.jsonl", train_records),
        "test": write_jsonl(out / "test.jsonl", test_records),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train", type=int, default=320)
    parser.add_argument("--test", type=int, default=40)
    args = parser.parse_args(argv)
    paths = write_samples(args.out, seed=args.seed, train=args.train, test=args.test)
    for role, path in paths.items():
        print(f"{role}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

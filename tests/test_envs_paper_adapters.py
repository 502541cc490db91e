"""ALFWorld, WebShop and AppWorld adapters on transcripts in each environment's own formats, without their data.

Formats follow the environments' sources: ALFWorld's TextWorld feedback (AlfredTWEnv / alfred_tw_env.py), the
WebShop server's templates (web_agent_site/templates/*.html) and routes (web_agent_site/app.py), AppWorld's
`world.execute` output and `world.evaluate().to_dict()`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hera_jax.envs import EnvUnavailableError, UnknownTaskError, make_env
from hera_jax.envs import alfworld as alf
from hera_jax.envs import appworld as apw
from hera_jax.envs import webshop as ws

ROOT = Path(__file__).resolve().parents[1]

# ---- ALFWorld -----------------------------------------------------------------------------------------------------

ALF_INTRO = (
    "-= Welcome to TextWorld, ALFRED! =-\n\n"
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 2, a cabinet 1, a countertop 1, "
    "a diningtable 1, a fridge 1, a sinkbasin 1, and a toaster 1.\n\n"
    "Your task is to: put a clean lettuce in diningtable."
)
ALF_GAME_DIR = "pick_clean_then_place_in_recep-Lettuce-None-DiningTable-17/trial_T20190909_043020_330212"


def test_alfworld_intro_and_feedback_parsing():
    room, task = alf.split_intro(ALF_INTRO)
    assert room.startswith("You are in the middle of a room.") and "Welcome" not in room
    assert task == "put a clean lettuce in diningtable."
    assert alf.clean_feedback("You arrive at loc 12. On the countertop 1, you see a lettuce 1.") == (
        "On the countertop 1, you see a lettuce 1."
    )
    assert alf.clean_feedback("You pick up the lettuce 1 from the countertop 1.\n") == (
        "You pick up the lettuce 1 from the countertop 1."
    )
    assert alf.task_type_of(f"/d/json_2.1.1/valid_unseen/{ALF_GAME_DIR}/game.tw-pddl") == (
        "pick_clean_then_place_in_recep"
    )
    with pytest.raises(ValueError, match="Your task is to"):
        alf.split_intro("You are in the middle of a room.")


def _write_game(root: Path, split_dir: str, folder: str, solvable: bool = True, walkthrough=()) -> Path:
    game = root / "json_2.1.1" / split_dir / folder / "trial_T1" / "game.tw-pddl"
    game.parent.mkdir(parents=True)
    game.write_text(json.dumps({"pddl_domain": "...", "grammar": "...", "pddl_problem": "...", "solvable": solvable,
                                "walkthrough": list(walkthrough)}))
    return game


def test_alfworld_game_listing_filters_like_alfredtwenv(tmp_path):
    _write_game(tmp_path, "valid_unseen", "pick_clean_then_place_in_recep-Lettuce-None-DiningTable-17")
    _write_game(tmp_path, "valid_unseen", "pick_clean_then_place_in_recep-Apple-None-Fridge-2")
    _write_game(tmp_path, "valid_unseen", "pick_heat_then_place_in_recep-Egg-None-Plate-9", solvable=False)
    _write_game(tmp_path, "valid_unseen", "pick_and_place_simple-Knife-None-Drawer-5-movable")
    _write_game(tmp_path, "valid_seen", "look_at_obj_in_light-Book-None-DeskLamp-3")
    games = alf.list_games(tmp_path, "test")
    assert [g.parent.parent.name for g in games["pick_clean_then_place_in_recep"]] == [
        "pick_clean_then_place_in_recep-Apple-None-Fridge-2",
        "pick_clean_then_place_in_recep-Lettuce-None-DiningTable-17",
    ]
    assert games["pick_heat_then_place_in_recep"] == [] and games["pick_and_place_simple"] == []
    assert alf.decode_variation(200_001) == ("test", 1) and alf.decode_variation(100_000) == ("dev", 0)


class FakeAlfredGame:
    """A TextWorld game as ALFWorld's wrappers present it: GameState dicts with feedback/won/admissible/expert plan."""

    PLAN = ["go to countertop 1", "take lettuce 1 from countertop 1", "go to sinkbasin 1",
            "clean lettuce 1 with sinkbasin 1", "go to diningtable 1", "put lettuce 1 in/on diningtable 1"]
    FEEDBACK = ["You arrive at loc 3. On the countertop 1, you see a lettuce 1.",
                "You pick up the lettuce 1 from the countertop 1.",
                "You arrive at loc 7. On the sinkbasin 1, you see nothing.",
                "You clean the lettuce 1 using the sinkbasin 1.",
                "You arrive at loc 1. On the diningtable 1, you see a mug 1.",
                "You put the lettuce 1 in/on the diningtable 1."]

    def __init__(self, game_file):
        self.game_file, self.progress, self.closed = game_file, 0, False

    def _state(self, feedback):
        won = self.progress == len(self.PLAN)
        plan = [] if won else (["look"] if self.progress == 0 and feedback == ALF_INTRO else [self.PLAN[self.progress]])
        admissible = ["look", "inventory", "go to countertop 1", "go to sinkbasin 1", "go to diningtable 1"]
        if not won:
            admissible.append(self.PLAN[self.progress])
        return {"feedback": feedback, "won": won, "admissible_commands": admissible,
                "extra.expert_plan": plan, "extra.gamefile": str(self.game_file)}

    def reset(self):
        self.progress = 0
        return self._state(ALF_INTRO)

    def step(self, command):
        if command == "look":
            return self._state("You are in the middle of a room."), 0, False
        if self.progress < len(self.PLAN) and command == self.PLAN[self.progress]:
            feedback = self.FEEDBACK[self.progress]
            self.progress += 1
            won = self.progress == len(self.PLAN)
            return self._state(feedback), int(won), won
        return self._state("Nothing happens."), 0, False

    def close(self):
        self.closed = True


def test_alfworld_episode_mapping_with_walkthrough_and_expert(tmp_path):
    _write_game(tmp_path, "valid_unseen", "pick_clean_then_place_in_recep-Lettuce-None-DiningTable-17",
                walkthrough=FakeAlfredGame.PLAN)
    env = alf.ALFWorld(data_dir=tmp_path, start_game=FakeAlfredGame)
    assert env.variations("pick_clean_then_place_in_recep", "test") == [200_000]
    first = env.reset("pick_clean_then_place_in_recep", 200_000)
    assert first.task_description == "put a clean lettuce in diningtable."
    assert first.gold_path == tuple(FakeAlfredGame.PLAN)  # the game file's walkthrough
    assert first.expert_action == "look"  # the handcoded expert's first move
    assert "go to countertop 1" in first.valid_actions
    assert env.step("open fridge 1").observation == "Nothing happens."
    results = [env.step(a) for a in first.gold_path]
    assert results[0].observation == "On the countertop 1, you see a lettuce 1."
    assert [r.expert_action for r in results[:-1]] == FakeAlfredGame.PLAN[1:]  # the expert's plan at each state
    assert results[-1].done and results[-1].success and results[-1].score == 1.0
    assert not any(r.success for r in results[:-1])
    with pytest.raises(UnknownTaskError):
        env.reset("pick_clean_then_place_in_recep", 200_001)
    with pytest.raises(UnknownTaskError):
        env.variations("clean_the_kitchen", "test")
    env.close()


def test_alfworld_missing_data_message(tmp_path):
    with pytest.raises(EnvUnavailableError, match="alfworld-download") as e:
        alf.ALFWorld(data_dir=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value) and "pip install alfworld" in str(e.value)


# ---- WebShop ------------------------------------------------------------------------------------------------------

INSTRUCTION = "i need a long clip-in hair extension which is natural looking, and price lower than 40.00 dollars"
HEAD = '<head><link rel="stylesheet" href="/static/style.css"><title>WebShop</title></head>'


def _search_page():
    return (f'<!DOCTYPE html><html>{HEAD}<body><div class="container"><div class="row">'
            '<div id="logo" class="text-center"><h2>WebShop</h2></div>'
            f'<div id="instruction-text" class="text-center"><h4>Instruction: <br>{INSTRUCTION}</h4></div>'
            '<form role="form" method="post" action="/fixed_0"><div class="input-group">'
            '<input id="search_input" type="text" name="search_query" placeholder="Search..." required/>'
            '<span class="input-group-btn"><button class="btn btn-success" type="submit">'
            '<i class="glyphicon glyphicon-search" aria-hidden="true"></i>Search</button></span></div></form>'
            '</div></div></body></html>')


def _results_page(products):
    items = "".join(
        f'<div class="grid-item"><img src="x.jpg" class="result-img">'
        f'<h4 class="mt-0 product-asin"><a class="product-link" href="/item_page/fixed_0/{asin}">{asin}</a></h4>'
        f'<h4 class="mt-0 product-title">{title}</h5>'  # the template really closes <h4> with </h5>
        f'<div class="d-flex"><h5 class="product-price">{price}</h6></div></div>'
        for asin, title, price in products
    )
    return (f'<!DOCTYPE html><html>{HEAD}<body><div class="container py-5"><div id="instruction-text">'
            f'<h4 style="padding:2px 10px;">Instruction: {INSTRUCTION}</h4>'
            '<h4 style="padding:2px 10px;">Current Query:  long clip-in hair extension </h4></div>'
            '<div class="row top-buffer"><div class="col-sm-8"><div><h1>Results</h1>'
            f'<p>Page 1 (1-10) of {len(products)} total results</p></div><div class="inline-block">'
            '<form method="post" action="/fixed_0">'
            '<button type="submit" class="btn btn-success">Back to Search</button>'
            '</form><form method="post" action="/search_results/fixed_0/x/2">'
            '<button type="submit" class="btn btn-primary">Next &gt;</button></form></div></div></div>'
            f'<!-- Old Row Layout --><div class="grid-container">{items}</div></div></body></html>')


def _item_page():
    return (f'<!DOCTYPE html><html>{HEAD}<body><div class="container py-5"><div id="instruction-text">'
            f'<h4 style="padding:2px 10px;">Instruction: {INSTRUCTION}</h4>'
            "<h4 style=\"padding:2px 10px;\">Current Query: ['long', 'clip-in']</h4></div><div>"
            '<form method="post"><button type="submit" class="btn btn-success">Back to Search</button></form>'
            '<form method="post"><button type="submit" class="btn btn-primary">&lt; Prev</button></form></div>'
            '<div class="row top-buffer"><div class="col-md-4"><div class="row top-buffer">'
            '<img id="product-image" src="x.jpg" class="item-page-img"></div>'
            '<div class="row top-buffer"><h4>color</h4><div class="radio-toolbar">'
            '<input type="radio" id="radio_color0" name="color" value="natural black">'
            '<label for="radio_color0">natural black</label>'
            '<input type="radio" id="radio_color1" name="color" value="light brown">'
            '<label for="radio_color1">light brown</label></div></div>'
            '<div class="row top-buffer"><h4>size</h4><div class="radio-toolbar">'
            '<input type="radio" id="radio_size0" name="size" value="22 inch"><label for="radio_size0">22 inch</label>'
            '</div></div></div><div class="col-md-6"><h2>Clip in Hair Extensions Natural Looking 22 inch</h2>'
            '<h4>Price: $32.99</h4><h4>Rating: N.A.</h4><div class="row top-buffer">'
            '<div class="col-sm-3" name="description"><form method="post">'
            '<button class="btn btn-primary" type="submit">Description</button></form></div>'
            '<div class="col-sm-3" name="bulletpoints"><form method="post">'
            '<button class="btn btn-primary" type="submit">Features</button></form></div>'
            '<div class="col-sm-3" name="reviews"><form method="post">'
            '<button class="btn btn-primary" type="submit">Reviews</button></form></div></div></div>'
            '<div class="col-sm-2"><div class="row top-buffer"><form method="post">'
            '<button type="submit" class="btn btn-lg purchase">Buy Now</button></form></div></div></div></div>'
            '</body><script>$(document).ready(function() { let options = {}; });</script></html>')


def _done_page(score):
    return (f'<!DOCTYPE html><html>{HEAD}<body><div class="container"><div class="row">'
            '<div id="thankyou" class="text-center"><h1>Thank you for shopping with us!</h1></div>'
            '<div id="stats" class="text-center"><h3 align="mturk_code">Your code: </h3><p><pre>fixed_0</pre> '
            '(Paste it in your MTurk interface.)</p><div style="display:none"><h2 align="left">Purchased</h2>'
            '<h4 id="asin">asin<pre>B09QQLVT8N</pre></p></div><hr class="solid">'
            f'<h3   id="reward">Your score (min 0.0, max 1.0)<pre>{score}</pre></h3>'
            '<h4 hidden>Reward Details <div id="reward_info"><pre>{}</pre></div></h4></div></div></div></body></html>')


PRODUCTS = [("B09QQLVT8N", "Clip in Hair Extensions Natural Looking 22 inch", "$32.99"),
            ("B08L5Y1N9M", "Synthetic Wig Short Bob", "$18.50"),
            ("B07XYZ1234", "Hair Clips Set of 12", "$9.99"),
            ("B01ABCDEF0", "Hair Extension Glue", "$12.00")]


def test_webshop_page_text_like_react_agents():
    start = ws.page_text(_search_page(), "init")
    assert "WebShop" in start.observation and INSTRUCTION in start.observation
    assert ws.instruction_of(_search_page()) == INSTRUCTION

    results = ws.page_text(_results_page(PRODUCTS), "search")
    lines = [line.strip() for line in results.observation.strip().split("\n")]
    assert lines[:5] == [
        "Results", "Page 1 (1-10) of 4 total results", "[Back to Search]", "[Next >]", "[B09QQLVT8N]"
    ]
    assert "Instruction:" not in results.observation  # the first two plain texts (instruction, query) are dropped
    assert "[B01ABCDEF0]" not in results.observation and "Hair Extension Glue" not in results.observation
    assert results.asins == tuple(p[0] for p in PRODUCTS)  # all results stay clickable by id
    assert "Clip in Hair Extensions Natural Looking 22 inch" in results.observation

    url = ws.PageState("fixed_0", "item", "long clip-in", 1, "B09QQLVT8N", (("color", "light brown"),)).url("http://h")
    item = ws.page_text(_item_page(), "item", url)
    assert "[[light brown]]" in item.observation and "[natural black]" in item.observation
    assert dict(item.option_types) == {"natural black": "color", "light brown": "color", "22 inch": "size"}
    assert {"Buy Now", "Description", "< Prev", "22 inch"} <= set(item.clickables)
    assert "let options" not in item.observation  # scripts are invisible

    done = ws.page_text(_done_page(0.75), "end")
    assert done.observation == "Your score (min 0.0, max 1.0): 0.75" and done.score == 0.75


def test_webshop_actions_and_urls():
    assert ws.parse_action("search[long clip-in hair extension]") == ("search", "long clip-in hair extension")
    assert ws.parse_action("click[< Prev]") == ("click", "< Prev")
    with pytest.raises(ws.InvalidAction):
        ws.parse_action("buy the first one")
    state = ws.PageState("fixed_7")
    assert state.url("http://h:3000/") == "http://h:3000/fixed_7"
    state, _ = ws.transition(state, "search[red shoes]", (), {})
    assert state.url("http://h") == "http://h/search_results/fixed_7/%5B%27red%27%2C%20%27shoes%27%5D/1"
    with pytest.raises(ws.InvalidAction, match="search page"):
        ws.transition(state, "search[blue shoes]", (), {})
    state, _ = ws.transition(state, "click[B1]", ("B1", "B2"), {})
    state, note = ws.transition(state, "click[red]", (), {"red": "color"})
    assert note == "You have clicked red." and state.options == (("color", "red"),)
    assert state.url("http://h").endswith("/item_page/fixed_7/B1/%5B%27red%27%2C%20%27shoes%27%5D/1/"
                                         "%7B%27color%27%3A%20%27red%27%7D")
    sub, _ = ws.transition(state, "click[Reviews]", (), {})
    assert "/item_sub_page/fixed_7/B1/" in sub.url("http://h") and "/Reviews/" in sub.url("http://h")
    back, _ = ws.transition(sub, "click[< Prev]", (), {})
    assert back.page_type == "item" and back.options == state.options
    end, _ = ws.transition(state, "click[Buy Now]", (), {})
    assert end.url("http://h") == "http://h/done/fixed_7/B1/%7B%27color%27%3A%20%27red%27%7D"


class FakeWebShopServer:
    """Routes like web_agent_site/app.py; records the URLs it was asked for."""

    def __init__(self, score):
        self.score, self.urls = score, []

    def __call__(self, url, timeout):
        self.urls.append(url)
        path = url.split("://", 1)[1].split("/", 1)[1]
        if path.startswith("search_results/"):
            return _results_page(PRODUCTS)
        if path.startswith(("item_page/", "item_sub_page/")):
            return _item_page()
        if path.startswith("done/"):
            return _done_page(self.score)
        return _search_page()


@pytest.mark.parametrize("score,success", [(1.0, True), (0.5, False)])
def test_webshop_episode_against_server_routes(score, success):
    server = FakeWebShopServer(score)
    env = ws.WebShop(base_url="http://shop:3000", fetch=server)
    assert env.variations("webshop", "test")[:2] == [0, 1] and len(env.variations("webshop", "dev")) == 1000
    first = env.reset("webshop", 3)
    assert first.task_description == INSTRUCTION and first.valid_actions == (ws.SEARCH_ACTION,)
    assert server.urls[-1] == "http://shop:3000/fixed_3"
    r = env.step("search[long clip-in hair extension]")
    assert "click[B09QQLVT8N]" in r.valid_actions and "click[Back to Search]" in r.valid_actions
    bad = env.step("click[B00NOTHERE]")
    assert bad.observation.startswith("Invalid action") and not bad.done
    env.step("click[B09QQLVT8N]")
    assert env.step("click[light brown]").observation == "You have clicked light brown."
    final = env.step("click[Buy Now]")
    assert server.urls[-1] == "http://shop:3000/done/fixed_3/B09QQLVT8N/%7B%27color%27%3A%20%27light%20brown%27%7D"
    assert final.done and final.score == score and final.reward == score and final.success is success


def test_webshop_unreachable_server_message():
    with pytest.raises(EnvUnavailableError, match="WebShop server not reachable at http://127.0.0.1:9") as e:
        make_env("webshop:http://127.0.0.1:9", timeout_s=2.0)
    assert "run_dev.sh" in str(e.value)


# ---- AppWorld -----------------------------------------------------------------------------------------------------


class FakeWorld:
    """`AppWorld(task_id=...)` as the adapter uses it: task, execute, task_completed, evaluate().to_dict(), close."""

    def __init__(self, task_id, experiment_name):
        self.task_id, self.completed, self.closed = task_id, False, False
        self.task = types.SimpleNamespace(
            instruction="How many playlists do I have in Spotify?",
            supervisor=types.SimpleNamespace(first_name="Joyce", last_name="Weaver",
                                             email="joyce-weav@gmail.com", phone_number="3155673041"),
        )

    def execute(self, code):
        if "complete_task" in code:
            self.completed = True
            return "Execution successful."
        if code.startswith("undefined"):
            return ("Execution failed. Traceback:\n  File \"<python-input>\", line 1, in <module>\n    undefined()\n"
                    "NameError: name 'undefined' is not defined")
        return "[\n {\n  \"name\": \"spotify\"\n }\n]"

    def task_completed(self):
        return self.completed

    def evaluate(self):
        passes = [{"requirement": "assert answers match."}, {"requirement": "assert no model changes."}]
        report = {"success": True, "difficulty": 1, "num_tests": 2, "passes": passes, "failures": []}
        return types.SimpleNamespace(to_dict=lambda: report)

    def close(self):
        self.closed = True


def test_appworld_mapping():
    reply = "I'll list the apps first.\n```python\nprint(apis.api_docs.show_app_descriptions())\n```"
    assert apw.extract_code(reply) == "print(apis.api_docs.show_app_descriptions())"
    assert apw.extract_code("print(1)") == "print(1)"
    assert apw.supervisor_prompt("Joyce", "Weaver", "j@x.com", "315", "Do X.") == (
        "My name is: Joyce Weaver. My personal email is j@x.com and phone number is 315.\nTask: Do X."
    )
    partial = {"success": False, "num_tests": 4, "passes": [{}, {}, {}], "failures": [{"requirement": "r"}]}
    assert apw.evaluation_outcome(partial) == (0.75, False)
    assert apw.evaluation_outcome({"success": True, "passes": [{}], "failures": []}) == (1.0, True)
    assert apw.is_execution_error("Execution failed. Traceback:\n  ...")
    assert apw.decode_variation(200_003) == ("test", 3)


def test_appworld_episode_with_world_api():
    ids = {"train": ["82e2fac_1"], "dev": ["50e1ac9_1", "50e1ac9_2"], "test_normal": ["2a163ab_1"]}
    env = apw.AppWorldEnv(open_world=FakeWorld, load_task_ids=ids.__getitem__)
    assert env.variations("appworld", "test") == [200_000] and env.task_id(100_001) == "50e1ac9_2"
    first = env.reset("appworld", 200_000)
    assert env._world.task_id == "2a163ab_1" and first.valid_actions == () and first.gold_path is None
    assert first.observation.startswith("My name is: Joyce Weaver.") and first.task_description.startswith("How many")
    r = env.step("```python\nundefined()\n```")
    assert apw.is_execution_error(r.observation) and not r.done
    r = env.step("print(apis.api_docs.show_app_descriptions())")
    assert '"spotify"' in r.observation and not r.done and r.score == 0.0
    r = env.step("apis.supervisor.complete_task(answer=3)")
    assert r.done and r.success and r.score == 1.0
    with pytest.raises(UnknownTaskError):
        env.reset("appworld", 200_001)
    env.close()


def test_appworld_missing_data_message(tmp_path):
    with pytest.raises(EnvUnavailableError, match="appworld download data") as e:
        apw.AppWorldEnv(root=tmp_path)
    assert "pip install appworld" in str(e.value)


# ---- CLI ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # among the slowest of the quick loop; CI runs it
def test_collect_cli_without_data_prints_install_and_fails(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ALFWORLD_DATA": str(tmp_path / "none"), "APPWORLD_ROOT": str(tmp_path)}
    for name, hint in [("alfworld", "alfworld-download"), ("webshop:http://127.0.0.1:9", "run_dev.sh"),
                       ("appworld", "appworld download data")]:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "experiments" / "collect.py"), "--env", name, "--out", str(tmp_path / "o"),
             "--no-progress"],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert proc.returncode != 0, name
        assert hint in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "o").exists()

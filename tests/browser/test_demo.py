"""The demo page (GET /) driven by clicks: two people join a room, see each other's
presence, chat (typing, reactions, edit, delete, older history on scroll) and hold a
video call with the incoming-call dialog. A screenshot of the live call is saved as
test-artifacts/demo-call.png.
"""

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.browser.conftest import ARTIFACTS, Browser, Hubbub, csp_violations
from tests.browser.helpers import RawClient, until

ROOM = "demo"
EARLIER = 70  # messages in the room before anyone opens the page (page size: 30)


@contextlib.contextmanager
def hubbub_with(tmp_path: Path, *options: str) -> Iterator[Hubbub]:
    """A server like the `server` fixture's, with command-line `options`."""
    hub = Hubbub(store="sqlite:///" + str(tmp_path / "tuned.db"),
                 log_path=tmp_path / "tuned.log", extra=list(options))
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


def toast(page: Any, text: str) -> Any:
    return page.get_by_test_id("toast").filter(has_text=text)


def member(page: Any, username: str) -> Any:
    return page.locator(f'[data-testid="member"][data-username="{username}"]')


def message(page: Any, text: str) -> Any:
    return page.get_by_test_id("message").filter(has=page.get_by_test_id(
        "message-content").get_by_text(text, exact=True))


async def join(page: Any, name: str) -> None:
    from playwright.async_api import expect

    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("room-input").fill(ROOM)
    await page.get_by_test_id("join-button").click()
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "open")
    await expect(page.get_by_test_id("room-name")).to_have_text(f"#{ROOM}")


async def joined(browser: Browser, url: str, *names: str) -> list[Any]:
    """A page per name (its user id the name in lower case), each joined to the room."""
    pages = [await browser.page(name.lower(), url + "/") for name in names]
    for page, name in zip(pages, names, strict=True):
        await join(page, name)
    return pages


async def four_in_the_room(http: aiohttp.ClientSession, server: Hubbub, ann: Any,
                           bob: Any) -> list[RawClient]:
    """cy and dee (raw clients), then ann's and bob's pages, in the room: four people."""
    from playwright.async_api import expect

    others = [await RawClient.connect(http, server.ws_url, user, ROOM)
              for user in ("cy", "dee")]
    await join(ann, "Ann")
    await join(bob, "Bob")
    await expect(member(ann, "Dee")).to_have_count(1)
    return others


async def test_demo_page_join_chat_and_call_by_clicks(server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect  # imported here: collecting needs no playwright

    async with aiohttp.ClientSession() as http:
        cy = await RawClient.connect(http, server.ws_url, "cy", ROOM)
        for n in range(1, EARLIER + 1):
            await cy.chat(ROOM, f"earlier message {n}")

        ann, bob = await joined(browser, server.url, "Ann", "Bob")

        # History: the latest page first, older pages as Ann scrolls up.
        messages = ann.get_by_test_id("message")
        await expect(message(ann, f"earlier message {EARLIER}")).to_be_visible()
        shown = await messages.count()
        assert shown < EARLIER, f"the first page should not hold all {EARLIER} messages"
        for _ in range(10):
            if await messages.count() == EARLIER:
                break
            await ann.get_by_test_id("messages").evaluate("box => { box.scrollTop = 0; }")
            await ann.wait_for_timeout(300)
        await expect(messages).to_have_count(EARLIER)
        await expect(ann.get_by_test_id("history-status")).to_contain_text("beginning")
        seqs = [int(s) for s in await messages.evaluate_all("els => els.map(e => e.dataset.seq)")]
        assert seqs == list(range(1, EARLIER + 1))

        # Presence: everyone listed with a dot; Bob goes away and comes back.
        await expect(member(ann, "Bob")).to_have_attribute("data-status", "online")
        await expect(member(bob, "Ann")).to_have_attribute("data-status", "online")
        await expect(ann.get_by_test_id("member")).to_have_count(3)
        await bob.get_by_test_id("status-select").select_option("away")
        await expect(member(ann, "Bob")).to_have_attribute("data-status", "away")
        await bob.get_by_test_id("status-select").select_option("online")
        await expect(member(ann, "Bob")).to_have_attribute("data-status", "online")

        # Typing, then the message; the indicator goes away when it is sent.
        await bob.get_by_test_id("message-input").press_sequentially("Hi Ann", delay=40)
        await expect(ann.get_by_test_id("typing-indicator")).to_have_text("Bob is typing…")
        await bob.get_by_test_id("send-button").click()
        await expect(message(ann, "Hi Ann")).to_be_visible()
        await expect(ann.get_by_test_id("typing-indicator")).to_have_text("")

        # Ann answers, reacts to Bob's message, edits hers and deletes another.
        await ann.get_by_test_id("message-input").fill("Hello Bob")
        await ann.get_by_test_id("message-input").press("Enter")
        await expect(message(bob, "Hello Bob")).to_be_visible()
        await message(ann, "Hi Ann").hover()
        party = message(ann, "Hi Ann").locator('[data-testid="react-button"][data-emoji="🎉"]')
        await party.click()
        await expect(message(bob, "Hi Ann").get_by_test_id("reaction")).to_have_text("🎉 1")
        # The same quick reaction again takes it back (as its chip does), and again adds it.
        await expect(party).to_have_attribute("aria-pressed", "true")
        await party.click()
        await expect(message(bob, "Hi Ann").get_by_test_id("reaction")).to_have_count(0)
        await message(ann, "Hi Ann").hover()
        await party.click()
        await expect(message(bob, "Hi Ann").get_by_test_id("reaction")).to_have_text("🎉 1")
        await message(ann, "Hello Bob").hover()
        await message(ann, "Hello Bob").get_by_test_id("edit-button").click()
        await ann.get_by_test_id("edit-input").fill("Hello Bob! Shall we talk?")
        await ann.get_by_test_id("edit-input").press("Enter")
        edited = message(bob, "Hello Bob! Shall we talk?")
        await expect(edited.get_by_test_id("edited")).to_be_visible()
        await ann.get_by_test_id("message-input").fill("a typo")
        await ann.get_by_test_id("message-input").press("Enter")
        await message(ann, "a typo").hover()
        await message(ann, "a typo").get_by_test_id("delete-button").click()
        await ann.get_by_test_id("confirm-delete-button").click()
        await expect(message(bob, "message deleted")).to_be_visible()

        # The call: Ann clicks "call" next to Bob, Bob accepts in the dialog.
        await member(ann, "Bob").get_by_test_id("call-button").click()
        await expect(bob.get_by_test_id("incoming-call")).to_be_visible()
        await expect(bob.get_by_test_id("incoming-caller")).to_have_text("Ann")
        ARTIFACTS.mkdir(exist_ok=True)
        await bob.screenshot(path=str(ARTIFACTS / "demo-incoming-call.png"))
        await bob.get_by_test_id("accept-call").click()
        for who, page in (("Ann", ann), ("Bob", bob)):
            await expect(page.get_by_test_id("call-state")).to_have_attribute(
                "data-state", "connected", timeout=30000)
            await until(page, "document.getElementById('remote-video').videoWidth > 0",
                        f"{who}'s remote video to show frames", timeout=30000,
                        dump="document.getElementById('call-state').textContent")
        await expect(ann.get_by_test_id("call-peer")).to_have_text("Bob")
        await ann.wait_for_timeout(1200)  # a second of call time, frames on both videos
        await ann.screenshot(path=str(ARTIFACTS / "demo-call.png"))
        await bob.screenshot(path=str(ARTIFACTS / "demo-call-bob.png"))

        await ann.get_by_test_id("hangup-button").click()
        await expect(bob.get_by_test_id("toast").filter(has_text="Ann hung up")).to_be_visible()
        await expect(bob.get_by_test_id("call-panel")).to_be_hidden()
        await expect(ann.get_by_test_id("call-panel")).to_be_hidden()
        await cy.ws.close()

        # All of it within the page's Content-Security-Policy: nothing inline, nothing
        # from elsewhere. The avatars' colours are set through the CSSOM, which it allows.
        for page in (ann, bob):
            assert await csp_violations(page) == []
        hue = await member(ann, "Bob").locator(".avatar").evaluate(
            "a => getComputedStyle(a).getPropertyValue('--h')")
        assert hue.strip().isdigit()


def console_errors(page: Any) -> list[str]:
    """The page's console errors and uncaught exceptions from now on."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def send(page: Any, text: str) -> None:
    await page.get_by_test_id("message-input").fill(text)
    await page.get_by_test_id("message-input").press("Enter")


async def test_demo_on_a_touch_phone_enter_is_a_new_line_and_send_sends(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    phone = await browser.page("ann", server.url + "/", has_touch=True, is_mobile=True,
                               viewport={"width": 390, "height": 844})
    desk = await browser.page("bob", server.url + "/")
    await join(phone, "Ann")
    await join(desk, "Bob")
    box = phone.get_by_test_id("message-input")
    await box.fill("milk")
    await box.press("Enter")  # the on-screen keyboard's return: a new line, not a send
    await box.press_sequentially("eggs")
    await expect(box).to_have_value("milk\neggs")
    await expect(phone.locator("#composer-hint")).to_have_text(
        "Enter starts a new line, the Send button sends")
    await phone.get_by_test_id("send-button").tap()
    sent = desk.get_by_test_id("message-content").filter(has_text="eggs")
    await expect(sent).to_be_visible()
    assert await sent.inner_text() == "milk\neggs"
    await expect(box).to_have_value("")
    # On the desk Enter still sends.
    await send(desk, "got it")
    await expect(message(phone, "got it")).to_be_visible()


async def test_demo_a_live_reaction_keeps_an_edit_in_progress(server: Hubbub,
                                                              browser: Browser) -> None:
    from playwright.async_api import expect

    gus = await browser.page("gus", server.url + "/")
    hal = await browser.page("hal", server.url + "/")
    errors = console_errors(gus)
    await join(gus, "Gus")
    await join(hal, "Hal")
    await send(gus, "teh typo")
    await expect(message(hal, "teh typo")).to_be_visible()

    # Gus starts editing; Hal reacts meanwhile: the edit box, its text and its focus stay,
    # and the reaction shows under it.
    await message(gus, "teh typo").hover()
    await message(gus, "teh typo").get_by_test_id("edit-button").click()
    edit = gus.get_by_test_id("edit-input")
    await edit.fill("the typo, fixed")
    await message(hal, "teh typo").hover()
    await message(hal, "teh typo").locator('[data-testid="react-button"][data-emoji="👍"]').click()
    chip = gus.get_by_test_id("message").filter(has=edit).get_by_test_id("reaction")
    await expect(chip).to_have_text("👍 1")
    await expect(edit).to_be_focused()
    await expect(edit).to_have_value("the typo, fixed")

    # Enter saves; the focus goes back to the message box; the reaction is still there.
    await edit.press("Enter")
    await expect(message(hal, "the typo, fixed").get_by_test_id("edited")).to_be_visible()
    await expect(message(gus, "the typo, fixed").get_by_test_id("reaction")).to_have_text("👍 1")
    await expect(gus.get_by_test_id("message-input")).to_be_focused()

    # Escape cancels, and also gives the focus back.
    await message(gus, "the typo, fixed").hover()
    await message(gus, "the typo, fixed").get_by_test_id("edit-button").click()
    await gus.get_by_test_id("edit-input").fill("never mind")
    await gus.get_by_test_id("edit-input").press("Escape")
    await expect(gus.get_by_test_id("edit-input")).to_have_count(0)
    await expect(message(gus, "the typo, fixed")).to_be_visible()
    await expect(gus.get_by_test_id("message-input")).to_be_focused()
    assert errors == [], errors


async def test_demo_a_blank_name_is_refused(server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    page = await browser.page("blank", server.url + "/")
    await page.get_by_test_id("name-input").fill("   ")
    await page.get_by_test_id("room-input").fill(ROOM)
    await page.get_by_test_id("join-button").click()
    await expect(page.get_by_test_id("login-error")).to_have_text("Please enter your name.")
    await expect(page.get_by_test_id("name-input")).to_be_focused()
    await expect(page.get_by_test_id("app")).to_be_hidden()
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "idle")

    await page.get_by_test_id("name-input").fill(" Ann ")
    await page.get_by_test_id("join-button").click()
    await expect(page.get_by_test_id("me")).to_have_text("Ann")
    await expect(page.get_by_test_id("login-error")).to_have_text("")


async def test_demo_leave_and_rejoin_under_a_new_name(server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    eve, bob = await joined(browser, server.url, "Eve", "Bob")
    await expect(member(bob, "Eve")).to_be_visible()

    await eve.get_by_test_id("leave-button").click()
    await expect(eve.get_by_test_id("login")).to_be_visible()
    await expect(member(bob, "Eve")).to_have_count(0)
    await join(eve, "Evelyn")
    await expect(eve.get_by_test_id("me")).to_have_text("Evelyn")
    await expect(member(eve, "Evelyn")).to_contain_text("(you)")
    await expect(member(eve, "Eve")).to_have_count(0)
    await expect(member(bob, "Evelyn")).to_be_visible()
    await send(eve, "it is Evelyn now")
    author = message(bob, "it is Evelyn now").locator(".author")
    await expect(author).to_have_text("Evelyn")


async def test_demo_my_status_shows_what_the_room_sees_after_a_rejoin(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    await bob.get_by_test_id("status-select").select_option("busy")
    await expect(member(ann, "Bob")).to_have_attribute("data-status", "busy")

    # Bob leaves and comes back at once: the server still has him busy, and so has his page.
    await bob.get_by_test_id("leave-button").click()
    await join(bob, "Bob")
    await expect(member(bob, "Bob")).to_have_attribute("data-status", "busy")
    await expect(bob.get_by_test_id("status-select")).to_have_value("busy")
    await expect(member(ann, "Bob")).to_have_attribute("data-status", "busy")

    await bob.get_by_test_id("status-select").select_option("online")
    await expect(member(ann, "Bob")).to_have_attribute("data-status", "online")


async def start_call(caller: Any, callee: Any, callee_name: str) -> None:
    """`caller` clicks Call next to `callee_name`; the callee's dialog rings."""
    from playwright.async_api import expect

    await member(caller, callee_name).get_by_test_id("call-button").click()
    await expect(callee.get_by_test_id("incoming-call")).to_be_visible()


# Counts the oscillators the page creates (the demo's ringer makes two per chime).
COUNT_OSCILLATORS = """(() => {
  window.__oscillators = 0;
  const make = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function (...args) {
    window.__oscillators += 1;
    return make.apply(this, args);
  };
})()"""


async def test_demo_an_incoming_call_rings_until_it_is_declined_or_answered(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    await bob.evaluate(COUNT_OSCILLATORS)
    for answer in ("reject-call", "accept-call"):
        before = await bob.evaluate("window.__oscillators")
        await start_call(ann, bob, "Bob")
        # The chime comes again while the dialog is open (every 2 s).
        await until(bob, f"window.__oscillators >= {before} + 4", "two chimes")
        await bob.get_by_test_id(answer).click()
        await expect(bob.get_by_test_id("incoming-call")).to_be_hidden()
        rung = await bob.evaluate("window.__oscillators")
        await bob.wait_for_timeout(2500)  # more than the chime's period: none comes
        assert await bob.evaluate("window.__oscillators") == rung, answer
        if answer == "accept-call":
            await connected(ann, bob)
            await ann.get_by_test_id("hangup-button").click()
        await expect(ann.get_by_test_id("call-panel")).to_be_hidden()


async def connected(*pages: Any) -> None:
    from playwright.async_api import expect

    for page in pages:
        await expect(page.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "connected", timeout=30000)


async def test_demo_mute_and_camera_labels_start_afresh_in_the_next_call(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    await start_call(ann, bob, "Bob")
    await bob.get_by_test_id("accept-call").click()
    await connected(ann, bob)
    await ann.get_by_test_id("mute-button").click()
    await ann.get_by_test_id("camera-button").click()
    await expect(ann.get_by_test_id("mute-button")).to_have_text("Unmute")
    await expect(ann.get_by_test_id("camera-button")).to_have_text("Camera on")
    await ann.get_by_test_id("hangup-button").click()
    await expect(bob.get_by_test_id("call-panel")).to_be_hidden()

    await start_call(ann, bob, "Bob")
    await bob.get_by_test_id("accept-call").click()
    await connected(ann, bob)
    await expect(ann.get_by_test_id("mute-button")).to_have_text("Mute")
    await expect(ann.get_by_test_id("camera-button")).to_have_text("Camera off")
    live = await ann.evaluate("() => { const t = window.hubbubDemo.call.stream.getTracks();"
                              " return t.every((track) => track.enabled); }")
    assert live, "the new call's microphone and camera should be on, as the labels say"



async def test_demo_a_late_signal_for_a_call_that_is_over_is_no_warning(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob, cy = await joined(browser, server.url, "Ann", "Bob", "Cy")
    warnings: list[str] = []
    cy.on("console", lambda m: warnings.append(m.text) if m.type in ("warning", "error") else None)
    await cy.evaluate("""() => { const hub = window.hubbubDemo.hub;
        const offer = hub.sendWebRTCOffer.bind(hub);
        hub.sendWebRTCOffer = (...args) => (window.lastCallId = offer(...args)); }""")
    await start_call(ann, bob, "Bob")
    await member(cy, "Bob").get_by_test_id("call-button").click()
    await expect(toast(cy, "Bob is in another call")).to_be_visible()
    # Chromium goes on finding candidates after the busy answer: the server refuses them.
    bob_id = await member(cy, "Bob").get_attribute("data-user-id")
    code = await cy.evaluate("""to => window.hubbubDemo.hub.sendIceCandidate(
        window.hubbubDemo.me, to, {candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host',
        sdpMid: '0', sdpMLineIndex: 0}, window.lastCallId).then(() => 'ack', (e) => e.code)""",
                             bob_id)
    assert code == "conflict", code
    await expect(cy.get_by_test_id("call-panel")).to_be_hidden()
    late = [w for w in warnings if w.startswith("hubbub demo: webrtc")]
    assert late == [], late


async def test_demo_the_callee_is_told_of_a_missed_call(tmp_path: Path, browser: Browser) -> None:
    from playwright.async_api import expect

    with hubbub_with(tmp_path, "--ring-timeout", "3") as server:
        ann, bob = await joined(browser, server.url, "Ann", "Bob")

        # Ann gives up while it rings.
        await start_call(ann, bob, "Bob")
        await ann.get_by_test_id("hangup-button").click()
        await expect(toast(bob, "Missed call from Ann")).to_be_visible()
        await expect(bob.get_by_test_id("incoming-call")).to_be_hidden()
        await expect(toast(bob, "hung up")).to_have_count(0)

        # Nobody answers: the server's ring timeout ends it.
        await start_call(ann, bob, "Bob")
        await expect(toast(ann, "No answer from Bob")).to_be_visible(timeout=30000)
        await expect(toast(bob, "Missed call from Ann").last).to_be_visible(timeout=30000)
        await expect(bob.get_by_test_id("incoming-call")).to_be_hidden()
        await expect(ann.get_by_test_id("call-panel")).to_be_hidden()
        await expect(toast(bob, "No answer")).to_have_count(0)

        # Answered, then Ann hangs up: that is not a missed call.
        await start_call(ann, bob, "Bob")
        await bob.get_by_test_id("accept-call").click()
        await connected(ann, bob)
        await ann.get_by_test_id("hangup-button").click()
        await expect(toast(bob, "Ann hung up")).to_be_visible()


async def raw_user(http: aiohttp.ClientSession, server: Hubbub, user_id: str,
                   username: str) -> RawClient:
    """A protocol-level user in ROOM with the demo's kind of user id (`cy-q7zz`)."""
    client = RawClient(await http.ws_connect(server.ws_url))
    welcome = await client.request("auth", {"userId": user_id, "username": username})
    assert welcome["type"] == "welcome", welcome
    joined = await client.request("join_room", {"roomId": ROOM})
    assert joined["type"] == "ack", joined
    return client


async def shown_text(page: Any) -> str:
    """What the page shows, tooltips included."""
    text: str = await page.evaluate("""() => document.body.innerText + '\\n' +
        [...document.querySelectorAll('[title]')].map((e) => e.title).join('\\n')""")
    return text


async def test_demo_shows_names_and_sentences_never_user_ids(tmp_path: Path,
                                                             browser: Browser) -> None:
    from playwright.async_api import expect

    # A long grace: Cy's dropped connection keeps him listed (online) while he cannot be
    # called, which is what a call to someone who just closed the tab meets.
    with hubbub_with(tmp_path, "--presence-grace", "120") as server:
        async with aiohttp.ClientSession() as http:
            cy = await raw_user(http, server, "cy-q7zz", "Cy")
            hello = await cy.chat(ROOM, "hello from Cy")
            dee = await raw_user(http, server, "dee-k2m1", "Dee")
            await dee.request("reaction", {"roomId": ROOM, "messageId": hello["messageId"],
                                           "emoji": "👍", "op": "add"})
            eve = await raw_user(http, server, "eve-x1y2", "Eve")
            oops = await eve.chat(ROOM, "oops")
            await eve.request("message_delete", {"roomId": ROOM, "messageId": oops["messageId"]})
            for gone in (dee, eve):  # they leave: their names are nowhere in the room now
                await gone.request("leave_room", {"roomId": ROOM})
                await gone.ws.close()
            await cy.ws.close()  # dropped: lingers as a member

            [ann] = await joined(browser, server.url, "Ann")
            reaction = message(ann, "hello from Cy").get_by_test_id("reaction")
            await expect(reaction).to_have_text("👍 1")
            await expect(message(ann, "message deleted")).to_be_visible()
            await expect(member(ann, "Cy")).to_be_visible()

            await member(ann, "Cy").get_by_test_id("call-button").click()
            refused = toast(ann, "Call failed")
            await expect(refused).to_have_text("Call failed: Cy is not online right now")
            await expect(ann.get_by_test_id("call-panel")).to_be_hidden()
            shown = await shown_text(ann)
            for user_id in ("cy-q7zz", "dee-k2m1", "eve-x1y2"):
                assert user_id not in shown, f"{user_id} shown on the page:\n{shown}"


async def test_demo_no_call_while_disconnected_and_a_call_that_cannot_connect_ends(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    call_bob = member(ann, "Bob").get_by_test_id("call-button")
    await expect(call_bob).to_be_enabled()

    # The server goes away: Call is disabled until the connection is back.
    server.stop()
    await expect(ann.get_by_test_id("conn-status")).to_have_attribute("data-state", "reconnecting")
    await expect(call_bob).to_be_disabled()
    server.start()
    await expect(ann.get_by_test_id("conn-status")).to_have_attribute(
        "data-state", "open", timeout=60000)
    await expect(bob.get_by_test_id("conn-status")).to_have_attribute(
        "data-state", "open", timeout=60000)
    await expect(call_bob).to_be_enabled(timeout=30000)

    # No ICE path (no candidate reaches the other side): the call ends with a reason after
    # the page's connect guard (shortened here) instead of "connecting…" for ever.
    for page in (ann, bob):
        await page.evaluate("""() => {
            window.hubbubDemo.guards.connectMs = 3000;
            window.hubbubDemo.hub.sendIceCandidate = () => Promise.resolve(null);
        }""")
    await call_bob.click()
    await expect(bob.get_by_test_id("incoming-call")).to_be_visible()
    await bob.get_by_test_id("accept-call").click()
    # Whichever side gives up first tells the other.
    failed = re.compile(r"could not connect", re.IGNORECASE)
    for page, peer in ((ann, "Bob"), (bob, "Ann")):
        said = page.get_by_test_id("toast").filter(has_text=failed).filter(has_text=peer)
        await expect(said).to_be_visible(timeout=30000)
        await expect(page.get_by_test_id("call-panel")).to_be_hidden()



async def test_demo_a_page_whose_network_goes_says_so_and_catches_up(tmp_path: Path,
                                                                     browser: Browser) -> None:
    from playwright.async_api import expect

    # The heartbeat alone would take 10 to 20 minutes to notice: the browser's `offline`
    # event is what tells Bob's page. (In the test's loopback-only namespace Chromium is
    # offline from the start, so set_offline() changes nothing it would announce: the test
    # fires the event a browser fires when its network goes.)
    with hubbub_with(tmp_path, "--heartbeat", "600") as server:
        ann, bob = await joined(browser, server.url, "Ann", "Bob")
        await browser.contexts["bob"].set_offline(True)
        await bob.evaluate("() => window.dispatchEvent(new Event('offline'))")
        await expect(bob.get_by_test_id("conn-status")).to_have_attribute(
            "data-state", "reconnecting", timeout=15000)
        await expect(member(bob, "Ann").get_by_test_id("call-button")).to_be_disabled()
        await send(ann, "said while Bob was offline")
        await send(bob, "written offline")
        await expect(message(bob, "written offline")).to_contain_text("sending")

        await browser.contexts["bob"].set_offline(False)
        await expect(bob.get_by_test_id("conn-status")).to_have_attribute(
            "data-state", "open", timeout=30000)
        await expect(message(bob, "said while Bob was offline")).to_be_visible()
        await expect(message(ann, "written offline")).to_be_visible()
        await expect(message(bob, "written offline")).not_to_contain_text("sending")


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


async def test_demo_on_a_phone_the_message_box_stays_on_screen_during_a_call(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann = await browser.page("ann", server.url + "/")
    bob = await browser.page("bob", server.url + "/", viewport={"width": 390, "height": 844})
    await join(ann, "Ann")
    await join(bob, "Bob")
    await start_call(ann, bob, "Bob")
    await bob.get_by_test_id("accept-call").click()
    await connected(ann, bob)

    viewport = {"x": 0, "y": 0, "width": 390, "height": 844}
    for part in ("message-input", "send-button", "hangup-button"):
        box = await bob.get_by_test_id(part).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 844, (part, box)
        assert overlap(box, viewport), (part, box)
    messages = await bob.get_by_test_id("messages").bounding_box()
    assert messages is not None and messages["height"] >= 120, messages
    await send(bob, "typed on the phone during the call")
    await expect(message(ann, "typed on the phone during the call")).to_be_visible()
    await expect(message(bob, "typed on the phone during the call")).to_be_in_viewport()

    # Toasts keep off the message box and Send, on both sizes.
    await ann.get_by_test_id("hangup-button").click()
    for page in (ann, bob):
        shown = page.get_by_test_id("toast").first
        await expect(shown).to_be_visible()
        toast_box = await shown.bounding_box()
        for part in ("message-input", "send-button"):
            box = await page.get_by_test_id(part).bounding_box()
            assert toast_box and box and not overlap(toast_box, box), (part, toast_box, box)


async def test_demo_by_keyboard(server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    for n in range(1, 6):
        await send(bob, f"note {n}")
    await expect(message(ann, "note 5")).to_be_visible()
    box = ann.get_by_test_id("message-input")
    labelled = ann.get_by_label("Message #demo")
    await expect(labelled).to_have_attribute("data-testid", "message-input")

    # From Leave to the message box: status, Call Bob, the message list (one stop: the
    # newest message, then its tools), the box; the other messages' tools are not in the way.
    await ann.get_by_test_id("leave-button").focus()
    path = []
    while not await box.evaluate("e => e === document.activeElement"):
        await ann.keyboard.press("Tab")
        path.append(await ann.evaluate("document.activeElement.dataset.testid"))
        assert len(path) <= 12, f"the message box is not reached by Tab: {path}"
    assert path == ["status-select", "call-button", "message", *["react-button"] * 4,
                    "reply-button", "message-input"], path

    # Back into the list: the newest message; the arrows move; Tab reaches its tools.
    await ann.keyboard.press("Shift+Tab")
    await expect(message(ann, "note 5")).to_be_focused()
    await ann.keyboard.press("ArrowUp")
    await expect(message(ann, "note 4")).to_be_focused()
    await ann.keyboard.press("Tab")
    thumbs = message(ann, "note 4").locator('[data-testid="react-button"][data-emoji="👍"]')
    await expect(thumbs).to_be_focused()
    await ann.keyboard.press("Enter")
    await expect(message(bob, "note 4").get_by_test_id("reaction")).to_have_text("👍 1")
    # The redrawn message keeps the focus where it was.
    await expect(message(ann, "note 4").locator(
        '[data-testid="react-button"][data-emoji="👍"]')).to_be_focused()

    # New messages from others are announced politely.
    await send(bob, "anyone there?")
    await expect(ann.get_by_test_id("announcer")).to_have_text("Bob: anyone there?")
    await expect(ann.get_by_test_id("announcer")).to_have_attribute("aria-live", "polite")

    # An incoming call focuses Accept: Enter answers.
    await start_call(bob, ann, "Ann")
    await expect(ann.get_by_test_id("accept-call")).to_be_focused()
    await ann.keyboard.press("Enter")
    await connected(ann, bob)


async def test_demo_keeps_offline_people_listed_greyed(tmp_path: Path, browser: Browser) -> None:
    from playwright.async_api import expect

    with hubbub_with(tmp_path, "--presence-grace", "1") as server:
        ann, bob = await joined(browser, server.url, "Ann", "Bob")
        await expect(ann.locator("#member-count")).to_have_text("2")

        # Bob closes the page: after the grace he is offline, then leaves the room; he
        # stays listed with a grey dot and when he was last seen, and cannot be called.
        await bob.goto("about:blank")
        bob_there = member(ann, "Bob")
        await expect(ann.locator("#member-count")).to_have_text("1", timeout=30000)
        # The server sends leave_room right after presence: Ann's own chat, echoed after
        # both, shows that she has handled them.
        await send(ann, "Bob has gone")
        await expect(message(ann, "Bob has gone")).to_have_attribute("data-seq", re.compile(r"\d"))
        await expect(bob_there).to_have_count(1)
        await expect(bob_there).to_have_attribute("data-status", "offline")
        await expect(bob_there.get_by_test_id("presence-dot")).to_have_class("dot offline")
        await expect(bob_there.get_by_test_id("member-status")).to_contain_text("last seen")
        await expect(bob_there.get_by_test_id("call-button")).to_be_disabled()

        # Bob comes back (the same tab: the same user): online again, listed once.
        await bob.goto(server.url + f"/?room={ROOM}&name=Bob")
        await expect(bob_there).to_have_attribute("data-status", "online")
        await expect(bob_there).to_have_count(1)
        await expect(ann.locator("#member-count")).to_have_text("2")


async def test_demo_replies_quote_the_message_replied_to(server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    await send(bob, "Lunch at noon?")
    await expect(message(ann, "Lunch at noon?")).to_be_visible()
    await send(ann, "Let me check")
    await expect(message(bob, "Let me check")).to_be_visible()

    await message(ann, "Lunch at noon?").hover()
    await message(ann, "Lunch at noon?").get_by_test_id("reply-button").click()
    await expect(ann.get_by_test_id("reply-bar")).to_contain_text("Replying to Bob")
    await expect(ann.get_by_test_id("message-input")).to_be_focused()
    await send(ann, "Yes, see you there")
    await expect(ann.get_by_test_id("reply-bar")).to_be_hidden()
    for page in (ann, bob):
        quoted = message(page, "Yes, see you there").get_by_test_id("reply-quote")
        await expect(quoted).to_have_text("Bob Lunch at noon?")
        # A reply starts its own group, with Ann's name above the quote: under "Let me
        # check" without a header, the quote read as part of that message.
        await expect(message(page, "Yes, see you there")).not_to_have_class(re.compile(r"\bcont\b"))
        await expect(message(page, "Yes, see you there").locator(".author")).to_be_visible()

    # Escape drops a reply before it is sent.
    await message(ann, "Lunch at noon?").hover()
    await message(ann, "Lunch at noon?").get_by_test_id("reply-button").click()
    await ann.get_by_test_id("message-input").press("Escape")
    await expect(ann.get_by_test_id("reply-bar")).to_be_hidden()
    await send(ann, "not a reply")
    await expect(message(bob, "not a reply").get_by_test_id("reply-quote")).to_have_count(0)

    # The original deleted: the quote says so (live, and for a later joiner).
    await message(bob, "Lunch at noon?").hover()
    await message(bob, "Lunch at noon?").get_by_test_id("delete-button").click()
    await bob.get_by_test_id("confirm-delete-button").click()
    gone = message(ann, "Yes, see you there").get_by_test_id("reply-quote")
    await expect(gone).to_have_text("Reply to a deleted message")
    [cat] = await joined(browser, server.url, "Cat")
    await expect(message(cat, "Yes, see you there").get_by_test_id("reply-quote")).to_have_text(
        "Reply to a deleted message")

    # The original not loaded here (older than the page, or unknown): said so.
    async with aiohttp.ClientSession() as http:
        raw = await raw_user(http, server, "dan-r4k9", "Dan")
        await raw.request("chat", {"roomId": ROOM, "content": "about that old thing",
                                   "replyTo": "0190aaaa-0000-7000-8000-000000000000"})
        await expect(message(ann, "about that old thing").get_by_test_id("reply-quote")
                     ).to_have_text("Reply to an earlier message")
        await raw.ws.close()


async def test_demo_separates_days(server: Hubbub, browser: Browser) -> None:
    import datetime

    from playwright.async_api import expect

    [ann] = await joined(browser, server.url, "Ann")
    await send(ann, "said today")
    await expect(message(ann, "said today")).to_have_attribute("data-seq", re.compile(r"\d"))
    await expect(ann.get_by_test_id("day-separator")).to_have_text(["Today"])

    # Three days on, the same history reads with its date.
    later = await browser.page("later", "about:blank")
    await later.clock.set_system_time(datetime.datetime.now() + datetime.timedelta(days=3))
    await later.goto(server.url + "/")
    await join(later, "Lou")
    await expect(message(later, "said today")).to_be_visible()
    separator = later.get_by_test_id("day-separator").first
    day = datetime.date.today().day
    await expect(separator).to_have_text(re.compile(rf"\b{day}\b"))
    await expect(separator).not_to_have_text(re.compile("Today|Yesterday"))


async def test_demo_names_in_any_script_keep_their_characters_and_their_place(
    server: Hubbub, browser: Browser
) -> None:
    """An avatar shows a name's first character whole (an astral emoji is two UTF-16 units:
    `charAt(0)` showed half of one), and a name holding U+202E (right-to-left override)
    does not turn "is typing…" around: names are isolated. Text is shown as text."""
    from playwright.async_api import expect

    async with aiohttp.ClientSession() as http:
        zoe = await raw_user(http, server, "zoe-a1b2", "😀Zoë")
        await zoe.chat(ROOM, "<img src=x onerror=alert(1)> שלום")
        mal = await raw_user(http, server, "mal-c3d4", "\u202eMal<b>")
        [ann] = await joined(browser, server.url, "Ann")
        hello = message(ann, "<img src=x onerror=alert(1)> שלום")
        await expect(hello).to_be_visible()
        assert await hello.locator("img").count() == 0
        await expect(hello.locator(".avatar")).to_have_text("😀")

        await mal.request("typing", {"roomId": ROOM, "isTyping": True})
        indicator = ann.get_by_test_id("typing-indicator")
        await expect(indicator).to_contain_text("is typing")
        # Where " is typing…" is drawn: right of the name, in reading order, when isolated;
        # inside the override it would be drawn reversed, left of the name.
        name_x, rest_x = await indicator.evaluate("""(node) => {
            const box = (n) => { const r = document.createRange(); r.selectNodeContents(n);
                                 return r.getBoundingClientRect(); };
            const rest = [...node.childNodes].find((n) => n.textContent.includes('typing'));
            const name = [...node.childNodes].find((n) => n.textContent.includes('Mal'));
            return [box(name).right, box(rest).left];
        }""")
        assert rest_x >= name_x - 1, (name_x, rest_x)


async def test_demo_says_new_messages_arrived_below_a_reader_scrolled_up(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    async with aiohttp.ClientSession() as http:
        cy = await raw_user(http, server, "cy-p2n8", "Cy")
        for n in range(1, 41):
            await cy.chat(ROOM, f"backlog {n}")
        [ann] = await joined(browser, server.url, "Ann")
        await expect(message(ann, "backlog 40")).to_be_in_viewport()
        pill = ann.get_by_test_id("new-messages")
        box = ann.get_by_test_id("messages")

        # At the bottom, a new message scrolls into view and there is nothing to point at.
        await cy.chat(ROOM, "seen at once")
        await expect(message(ann, "seen at once")).to_be_in_viewport()
        await expect(pill).to_be_hidden()

        # Scrolled up to read: new messages stay below, and the pill says they came.
        await box.evaluate("(b) => { b.scrollTop = 0; }")
        await expect(message(ann, "seen at once")).not_to_be_in_viewport()
        await cy.chat(ROOM, "while you read")
        await cy.chat(ROOM, "and another")
        await expect(pill).to_have_text("2 new messages ↓")
        await expect(message(ann, "and another")).not_to_be_in_viewport()

        # A click goes down to them, and the pill goes away.
        await pill.click()
        await expect(message(ann, "and another")).to_be_in_viewport()
        await expect(pill).to_be_hidden()

        # Scrolling down by hand also clears it.
        await box.evaluate("(b) => { b.scrollTop = 0; }")
        await cy.chat(ROOM, "one more")
        await expect(pill).to_have_text("1 new message ↓")
        await box.evaluate("(b) => { b.scrollTop = b.scrollHeight; }")
        await expect(pill).to_be_hidden()
        await cy.ws.close()


async def hide(page: Any, hidden: bool) -> None:
    """Make `page` hidden (or visible again) as a tab in the background is: Chromium's
    headless pages stay visible, so `document.hidden` is overridden and the event fired."""
    await page.evaluate("""(hidden) => {
        if (hidden) {
            const as = (value) => ({ configurable: true, get: () => value });
            Object.defineProperty(document, 'hidden', as(true));
            Object.defineProperty(document, 'visibilityState', as('hidden'));
        } else {
            delete document.hidden;
            delete document.visibilityState;
        }
        document.dispatchEvent(new Event('visibilitychange'));
    }""", hidden)


async def test_demo_counts_unread_messages_in_the_title_while_hidden(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    await expect(ann).to_have_title("#demo · hubbub")

    await hide(ann, True)
    await send(bob, "psst")
    await send(bob, "still there?")
    await expect(message(ann, "still there?")).to_be_attached()
    await expect(ann).to_have_title("(2) #demo · hubbub")

    # Back on the tab: the count goes; a message read as it comes is not counted.
    await hide(ann, False)
    await expect(ann).to_have_title("#demo · hubbub")
    await send(bob, "welcome back")
    await expect(message(ann, "welcome back")).to_be_visible()
    await expect(ann).to_have_title("#demo · hubbub")

    await ann.get_by_test_id("leave-button").click()
    await expect(ann).to_have_title("hubbub · video chat demo")


async def test_demo_links_in_messages_are_links_and_nothing_else_is_markup(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    text = ('docs at https://example.com/a?b=1&c=<2>, see (https://example.org/x_(y)). '
            'not javascript:alert(1) nor <a href="javascript:alert(2)">this</a> '
            'nor ftp://example.net/f; http://x.test/"onmouseover="alert(3)')
    async with aiohttp.ClientSession() as http:
        cy = await raw_user(http, server, "cy-l1n2", "Cy")
        await cy.chat(ROOM, text)
        [ann] = await joined(browser, server.url, "Ann")
        content = ann.get_by_test_id("message-content").filter(has_text="docs at")
        await expect(content).to_have_count(1)
        # The text is shown as sent, character for character.
        assert await content.text_content() == text
        links = content.locator("a")
        await expect(links).to_have_count(3)
        hrefs = await links.evaluate_all("(as) => as.map((a) => a.getAttribute('href'))")
        assert hrefs == ["https://example.com/a?b=1&c=", "https://example.org/x_(y)",
                         "http://x.test/"], hrefs
        await expect(links.nth(1)).to_have_text("https://example.org/x_(y)")
        for n in range(3):
            await expect(links.nth(n)).to_have_attribute("target", "_blank")
            await expect(links.nth(n)).to_have_attribute("rel", "noopener noreferrer")
        for attribute in ("onmouseover", "onclick"):
            assert await content.locator(f"[{attribute}]").count() == 0
        await cy.ws.close()


async def test_demo_sends_and_edits_messages_of_several_lines(server: Hubbub,
                                                              browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    box = ann.get_by_test_id("message-input")
    await box.press_sequentially("first line")
    await box.press("Shift+Enter")
    await box.press_sequentially("second line")
    await expect(box).to_have_value("first line\nsecond line")
    await box.press("Enter")
    await expect(box).to_have_value("")

    sent = bob.get_by_test_id("message-content").filter(has_text="first line")
    await expect(sent).to_have_count(1)
    assert await sent.text_content() == "first line\nsecond line"
    # Shown on two lines: innerText keeps a line break only where one is drawn.
    assert await sent.evaluate("(e) => e.innerText") == "first line\nsecond line"
    height, line = await sent.evaluate(
        "(e) => [e.getBoundingClientRect().height, parseFloat(getComputedStyle(e).lineHeight)]")
    assert height >= 2 * line - 1, (height, line)

    # Editing keeps the lines, and Shift+Enter adds one there too.
    mine = ann.get_by_test_id("message").filter(has_text="first line")
    await mine.hover()
    await mine.get_by_test_id("edit-button").click()
    edit = ann.get_by_test_id("edit-input")
    await expect(edit).to_have_value("first line\nsecond line")
    await edit.press("End")
    await edit.press("Shift+Enter")
    await edit.press_sequentially("third line")
    await edit.press("Enter")
    edited = bob.get_by_test_id("message").filter(has_text="third line")
    await expect(edited.get_by_test_id("edited")).to_be_visible()
    assert await edited.get_by_test_id("message-content").text_content() == (
        "first line\nsecond line\nthird line")


async def test_demo_asks_before_deleting_a_message(server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann, bob = await joined(browser, server.url, "Ann", "Bob")
    await send(ann, "maybe delete me")
    await expect(message(bob, "maybe delete me")).to_be_visible()
    dialog = ann.get_by_test_id("confirm-delete")

    # Cancel keeps it (Bob's page shows it after a later message, so the delete never went).
    await message(ann, "maybe delete me").hover()
    await message(ann, "maybe delete me").get_by_test_id("delete-button").click()
    await expect(dialog).to_be_visible()
    await expect(ann.get_by_test_id("confirm-delete-quote")).to_have_text("maybe delete me")
    await expect(ann.get_by_test_id("cancel-delete")).to_be_focused()
    await ann.get_by_test_id("cancel-delete").click()
    await expect(dialog).to_be_hidden()
    # Escape cancels too.
    await message(ann, "maybe delete me").hover()
    await message(ann, "maybe delete me").get_by_test_id("delete-button").click()
    await expect(dialog).to_be_visible()
    await ann.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await send(ann, "after thinking twice")
    await expect(message(bob, "after thinking twice")).to_be_visible()
    await expect(message(bob, "maybe delete me")).to_be_visible()
    await expect(message(ann, "maybe delete me")).to_be_visible()

    # Delete deletes.
    await message(ann, "maybe delete me").hover()
    await message(ann, "maybe delete me").get_by_test_id("delete-button").click()
    await ann.get_by_test_id("confirm-delete-button").click()
    await expect(dialog).to_be_hidden()
    await expect(message(bob, "message deleted")).to_be_visible()
    await expect(message(ann, "message deleted")).to_be_visible()

    # Deleted elsewhere (Ann on another device) while the dialog asks: it goes away.
    await message(ann, "after thinking twice").hover()
    await message(ann, "after thinking twice").get_by_test_id("delete-button").click()
    await expect(dialog).to_be_visible()
    ann_id = await message(ann, "after thinking twice").get_attribute("data-user-id")
    message_id = await message(ann, "after thinking twice").get_attribute("data-message-id")
    async with aiohttp.ClientSession() as http:
        other_device = await raw_user(http, server, ann_id, "Ann")
        await other_device.request("message_delete", {"roomId": ROOM, "messageId": message_id})
        await expect(dialog).to_be_hidden()
        await expect(message(ann, "message deleted")).to_have_count(2)
        await other_device.ws.close()


async def test_demo_on_a_phone_on_its_side_the_messages_get_the_height(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann = await browser.page("ann", server.url + "/", viewport={"width": 844, "height": 390})
    bob = await browser.page("bob", server.url + "/")
    await join(ann, "Ann")
    await join(bob, "Bob")
    await expect(member(ann, "Bob")).to_be_visible()
    messages = await ann.get_by_test_id("messages").bounding_box()
    # Above the chat, the people took 35 % of the height and left the messages ~130 px.
    assert messages is not None and messages["height"] >= 390 / 2, messages
    ARTIFACTS.mkdir(exist_ok=True)
    await ann.screenshot(path=str(ARTIFACTS / "demo-phone-landscape.png"))

    # In a call: the call beside the chat; the message box, Send and Hang up on screen.
    await start_call(bob, ann, "Ann")
    await ann.get_by_test_id("accept-call").click()
    await connected(ann, bob)
    viewport = {"x": 0, "y": 0, "width": 844, "height": 390}
    for part in ("message-input", "send-button", "hangup-button", "remote-video"):
        box = await ann.get_by_test_id(part).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 390, (part, box)
        assert overlap(box, viewport), (part, box)
    await send(ann, "typed on its side during the call")
    await expect(message(bob, "typed on its side during the call")).to_be_visible()
    await expect(message(ann, "typed on its side during the call")).to_be_in_viewport()
    await ann.screenshot(path=str(ARTIFACTS / "demo-phone-landscape-call.png"))


async def test_demo_on_a_phone_held_upright_the_people_fold_into_a_panel(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann = await browser.page("ann", server.url + "/", viewport={"width": 390, "height": 844})
    bob = await browser.page("bob", server.url + "/")
    async with aiohttp.ClientSession() as http:
        others = await four_in_the_room(http, server, ann, bob)

        # The people are a button in the room's bar: the messages get the height. Above the
        # chat, the people and My status took 35 % of it and left the messages ~400 px.
        messages = await ann.get_by_test_id("messages").bounding_box()
        assert messages is not None and messages["height"] >= 844 / 2, messages
        toggle = ann.get_by_test_id("people-toggle")
        await expect(toggle).to_have_text("People (4)")
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(ann.get_by_test_id("members")).to_be_hidden()
        await expect(ann.get_by_test_id("status-select")).to_be_hidden()
        ARTIFACTS.mkdir(exist_ok=True)
        await ann.screenshot(path=str(ARTIFACTS / "demo-phone-portrait.png"))

        # The button opens them over the chat, My status first; the button closes them.
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-expanded", "true")
        await expect(ann.get_by_test_id("status-select")).to_be_focused()
        for name in ("Ann", "Bob", "Cy", "Dee"):
            await expect(member(ann, name)).to_be_in_viewport()
        await expect(member(ann, "Bob").get_by_test_id("call-button")).to_be_enabled()
        await ann.screenshot(path=str(ARTIFACTS / "demo-phone-portrait-people.png"))
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(ann.get_by_test_id("members")).to_be_hidden()
        await expect(toggle).to_be_focused()

        # By keyboard: Enter opens, Escape closes and gives the focus back to the button.
        await ann.keyboard.press("Enter")
        await expect(member(ann, "Dee")).to_be_visible()
        await expect(ann.get_by_test_id("status-select")).to_be_focused()
        await ann.keyboard.press("Escape")
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(member(ann, "Dee")).to_be_hidden()
        await expect(toggle).to_be_focused()

        # A tap on the (dimmed) chat below the panel closes it.
        await toggle.click()
        await expect(member(ann, "Dee")).to_be_visible()
        await ann.mouse.click(195, messages["y"] + messages["height"] - 20)
        await expect(member(ann, "Dee")).to_be_hidden()

        # A call from the panel: it closes, and the call, Hang up, People (a test of its
        # own below), the box and Send show.
        await toggle.click()
        await start_call(ann, bob, "Bob")
        await expect(ann.get_by_test_id("members")).to_be_hidden()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(ann.get_by_test_id("hangup-button")).to_be_focused()
        for part in ("call-panel", "hangup-button", "people-toggle", "message-input",
                     "send-button"):
            await expect(ann.get_by_test_id(part)).to_be_in_viewport()
        await bob.get_by_test_id("reject-call").click()
        await expect(ann.get_by_test_id("call-panel")).to_be_hidden()
        await expect(toggle).to_be_visible()

        # Turned on its side with the panel open: the people beside the chat, as before.
        await toggle.click()
        await ann.set_viewport_size({"width": 844, "height": 390})
        await expect(toggle).to_be_hidden()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(member(ann, "Dee")).to_be_visible()
        await ann.set_viewport_size({"width": 390, "height": 844})
        await expect(member(ann, "Dee")).to_be_hidden()
        assert await csp_violations(ann) == []
        for other in others:
            await other.ws.close()


PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}


async def fits_the_screen(page: Any) -> None:
    """Nothing runs off the screen: the page itself never scrolls, either way."""
    await until(page, "document.documentElement.scrollWidth <= innerWidth"
                      " && document.documentElement.scrollHeight <= innerHeight",
                "the page to fit the screen",
                dump="[document.documentElement.scrollWidth, innerWidth,"
                     " document.documentElement.scrollHeight, innerHeight]")


async def reachable(page: Any, *parts: str) -> None:
    """Each part wholly on screen and the one a tap there reaches (nothing covers it)."""
    from playwright.async_api import expect

    for part in parts:
        await expect(page.get_by_test_id(part)).to_be_in_viewport(ratio=1)
        await page.get_by_test_id(part).click(trial=True)  # Playwright's hit-target check


async def room_to_read(page: Any, share: float) -> None:
    """The messages (the list's scrolling box) get at least `share` of the screen's height."""
    await until(page, "(share) => document.querySelector('[data-testid=messages]')"
                      ".getBoundingClientRect().height >= share * innerHeight",
                f"the messages to get {share:.0%} of the height", arg=share,
                dump="[document.querySelector('[data-testid=messages]')"
                     ".getBoundingClientRect().height, innerWidth, innerHeight]")


async def preview_inside_the_video(page: Any) -> None:
    """In a call, the local preview lies wholly within the remote video."""
    boxes = ("['remote-video', 'local-video']"
             ".map((id) => document.getElementById(id).getBoundingClientRect())")
    await until(page, "(([video, preview]) => preview.left >= video.left"
                      " && preview.right <= video.right && preview.top >= video.top"
                      f" && preview.bottom <= video.bottom)({boxes})",
                "the local preview to lie within the remote video",
                dump=f"{boxes}.map((box) => JSON.stringify(box))")


async def a_call_button_closes_the_people(page: Any, toggle: Any) -> None:
    """With the people open in a call, a tap on Mute closes them and mutes: the chat is back,
    its box and Send within reach."""
    from playwright.async_api import expect

    await toggle.tap()
    await expect(member(page, "Cy")).to_be_in_viewport()
    await page.get_by_test_id("mute-button").tap()
    await expect(page.get_by_test_id("mute-button")).to_have_text("Unmute")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await reachable(page, "message-input", "send-button")


async def test_demo_on_a_phone_held_upright_people_open_during_a_call(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann = await browser.page("ann", server.url + "/", **PHONE)
    bob = await browser.page("bob", server.url + "/")
    async with aiohttp.ClientSession() as http:
        cy = await RawClient.connect(http, server.ws_url, "cy", ROOM)
        await join(ann, "Ann")
        await join(bob, "Bob")
        await start_call(bob, ann, "Ann")
        await ann.get_by_test_id("accept-call").tap()
        await connected(ann, bob)

        # The call on top, under it the room's bar with People, then the chat. People used to
        # leave the bar during a call: who was here, and My status, were out of reach.
        toggle = ann.get_by_test_id("people-toggle")
        await expect(toggle).to_have_text("People (3)")
        await reachable(ann, "people-toggle", "leave-button", "mute-button", "camera-button",
                        "hangup-button", "message-input", "send-button")
        await room_to_read(ann, 0.3)
        await preview_inside_the_video(ann)
        await toggle.tap()
        await expect(toggle).to_have_attribute("aria-expanded", "true")
        await expect(ann.get_by_test_id("status-select")).to_be_focused()
        for name in ("Ann", "Bob", "Cy"):
            await expect(member(ann, name)).to_be_in_viewport()
        # The people take the chat's place: the call and its buttons stay, nothing runs off.
        await reachable(ann, "remote-video", "mute-button", "camera-button", "hangup-button",
                        "people-toggle", "status-select")
        await fits_the_screen(ann)
        await ann.get_by_test_id("status-select").select_option("busy")
        await expect(member(bob, "Ann")).to_have_attribute("data-status", "busy")
        ARTIFACTS.mkdir(exist_ok=True)
        await ann.screenshot(path=str(ARTIFACTS / "demo-phone-portrait-call-people.png"))

        # People again: back to the chat, at what was said meanwhile, the call still on.
        await send(bob, "said while Ann looked at the people")
        await expect(message(ann, "said while Ann looked at the people")).to_be_attached()
        await toggle.tap()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(member(ann, "Cy")).to_be_hidden()
        await expect(message(ann, "said while Ann looked at the people")).to_be_in_viewport()
        await reachable(ann, "message-input", "send-button", "hangup-button")
        await expect(ann.get_by_test_id("call-state")).to_have_attribute("data-state", "connected")

        await a_call_button_closes_the_people(ann, toggle)
        await toggle.tap()
        await expect(member(ann, "Cy")).to_be_in_viewport()
        await ann.get_by_test_id("hangup-button").tap()
        await expect(bob.get_by_test_id("call-panel")).to_be_hidden()
        await expect(ann.get_by_test_id("call-panel")).to_be_hidden()
        await reachable(ann, "people-toggle", "message-input", "send-button")
        assert await csp_violations(ann) == []
        await cy.ws.close()


async def test_demo_on_a_short_phone_held_upright_the_call_leaves_room_to_read(
        server: Hubbub, browser: Browser) -> None:
    """A 360x640 phone in a call: the call's name and buttons lie over the video, so the
    messages keep a third of the height (above and below it they left a fifth), and every
    control stays on screen and uncovered, the preview clear of both."""
    from playwright.async_api import expect

    ann = await browser.page("ann", server.url + "/", **{
        **PHONE, "viewport": {"width": 360, "height": 640}})
    bob = await browser.page("bob", server.url + "/")
    await join(ann, "Ann")
    await join(bob, "Bob")
    await start_call(bob, ann, "Ann")
    await ann.get_by_test_id("accept-call").tap()
    await connected(ann, bob)

    await room_to_read(ann, 0.33)
    await reachable(ann, "call-state", "mute-button", "camera-button", "hangup-button",
                    "people-toggle", "leave-button", "message-input", "send-button")
    await preview_inside_the_video(ann)
    preview = await ann.get_by_test_id("local-video").bounding_box()
    assert preview is not None
    for part in ("call-peer", "call-state", "mute-button", "camera-button", "hangup-button"):
        box = await ann.get_by_test_id(part).bounding_box()
        assert box is not None and not overlap(box, preview), (part, box, preview)
    await fits_the_screen(ann)
    await send(bob, "read on a small phone during the call")
    await expect(message(ann, "read on a small phone during the call")).to_be_in_viewport()
    ARTIFACTS.mkdir(exist_ok=True)
    await ann.screenshot(path=str(ARTIFACTS / "demo-short-phone-call.png"))
    await ann.get_by_test_id("hangup-button").tap()
    await expect(bob.get_by_test_id("call-panel")).to_be_hidden()


# A tablet held upright, on its side, and a small one on its side; whether the people sit
# beside the chat (a desktop's layout) or behind the People button.
TABLETS = (({"width": 768, "height": 1024}, "button"), ({"width": 1024, "height": 768}, "beside"),
           ({"width": 900, "height": 600}, "button"))


async def usable_as_a_tablet(page: Any, people: str, in_call: bool) -> None:
    """Nothing runs off the screen; the messages, the box and Send are on it; the people and
    My status are there or one tap away (the list scrolling in its place if it is long); in a
    call its video and buttons are on screen too, the people open or not, the messages keep
    nearly a third of the height and the preview of one's own camera stays on the video."""
    from playwright.async_api import expect

    size = page.viewport_size
    call = ("remote-video", "mute-button", "camera-button", "hangup-button") if in_call else ()
    await fits_the_screen(page)
    await expect(page.get_by_test_id("messages")).to_be_in_viewport()
    await reachable(page, "message-input", "send-button", "leave-button", *call)
    if in_call:  # at 900 by 600 the video, as wide as the screen, left the messages ~100 px
        await room_to_read(page, 0.3)
        await preview_inside_the_video(page)
    toggle = page.get_by_test_id("people-toggle")
    if people == "button":
        await reachable(page, "people-toggle")
        await toggle.tap()
        await expect(toggle).to_have_attribute("aria-expanded", "true")
    else:
        await expect(toggle).to_be_hidden()
    await reachable(page, "status-select", *call)
    for name in ("Ann", "Bob", "Cy", "Dee"):  # scrolling the list on a short screen
        await member(page, name).scroll_into_view_if_needed()
        await expect(member(page, name), f"{name} at {size}").to_be_in_viewport()
    await fits_the_screen(page)
    if people == "button":
        await toggle.tap()
        await expect(member(page, "Dee")).to_be_hidden()
        await reachable(page, "message-input", "send-button", *call)


async def test_demo_on_a_tablet_the_chat_the_people_and_the_call_fit(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    tablet = await browser.page("ann", server.url + "/", has_touch=True, is_mobile=True,
                                viewport=TABLETS[0][0])
    bob = await browser.page("bob", server.url + "/")
    async with aiohttp.ClientSession() as http:
        others = await four_in_the_room(http, server, tablet, bob)
        for size, people in TABLETS:
            await tablet.set_viewport_size(size)
            await usable_as_a_tablet(tablet, people, in_call=False)

        await start_call(bob, tablet, "Ann")
        await tablet.get_by_test_id("accept-call").tap()
        await connected(tablet, bob)
        ARTIFACTS.mkdir(exist_ok=True)
        for size, people in TABLETS:
            await tablet.set_viewport_size(size)
            await usable_as_a_tablet(tablet, people, in_call=True)
            said = f"from the tablet at {size['width']}x{size['height']}"
            await tablet.get_by_test_id("message-input").fill(said)
            await tablet.get_by_test_id("send-button").tap()  # a touch screen's Enter: a line
            await expect(message(bob, said)).to_be_visible()
            await expect(message(tablet, said)).to_be_in_viewport()
            await tablet.screenshot(
                path=str(ARTIFACTS / f"demo-tablet-{size['width']}x{size['height']}-call.png"))
        assert await csp_violations(tablet) == []
        for other in others:
            await other.ws.close()


# A phone on its side, and a smaller one.
SIDEWAYS = ({"width": 844, "height": 390}, {"width": 667, "height": 375})


async def test_demo_on_a_phone_on_its_side_people_open_during_a_call(
        server: Hubbub, browser: Browser) -> None:
    from playwright.async_api import expect

    ann = await browser.page("ann", server.url + "/", has_touch=True, is_mobile=True,
                             viewport=SIDEWAYS[0])
    bob = await browser.page("bob", server.url + "/")
    async with aiohttp.ClientSession() as http:
        others = await four_in_the_room(http, server, ann, bob)
        # Out of a call the people are beside the chat, as before: no button.
        toggle = ann.get_by_test_id("people-toggle")
        await expect(toggle).to_be_hidden()
        await reachable(ann, "status-select", "leave-button", "message-input", "send-button")

        await start_call(bob, ann, "Ann")
        await ann.get_by_test_id("accept-call").tap()
        await connected(ann, bob)
        ARTIFACTS.mkdir(exist_ok=True)
        for size in SIDEWAYS:
            await ann.set_viewport_size(size)
            # The call on the left; on the right the room's bar with People, then the chat.
            # Only the room's name and Leave used to be there: who was here, and My status,
            # were out of reach until hanging up.
            await expect(toggle).to_have_text("People (4)")
            await reachable(ann, "people-toggle", "leave-button", "mute-button", "camera-button",
                            "hangup-button", "message-input", "send-button")
            await room_to_read(ann, 0.5)
            await preview_inside_the_video(ann)
            await fits_the_screen(ann)
            await toggle.tap()
            await expect(toggle).to_have_attribute("aria-expanded", "true")
            await expect(ann.get_by_test_id("status-select")).to_be_focused()
            # The people take the chat's place, under the bar; the call and its buttons stay.
            await reachable(ann, "status-select", "people-toggle", "leave-button", "remote-video",
                            "mute-button", "camera-button", "hangup-button")
            for name in ("Ann", "Bob", "Cy", "Dee"):  # scrolling the list if it is long
                await member(ann, name).scroll_into_view_if_needed()
                await expect(member(ann, name), f"{name} at {size}").to_be_in_viewport()
            await fits_the_screen(ann)
            await ann.screenshot(path=str(
                ARTIFACTS / f"demo-phone-landscape-{size['width']}x{size['height']}"
                            "-call-people.png"))
            # Esc: the chat again, the focus back on People.
            await ann.keyboard.press("Escape")
            await expect(toggle).to_have_attribute("aria-expanded", "false")
            await expect(member(ann, "Dee")).to_be_hidden()
            await expect(toggle).to_be_focused()
            await reachable(ann, "message-input", "send-button", "hangup-button")

        # My status from the panel; People again shows what was said meanwhile.
        await toggle.tap()
        await ann.get_by_test_id("status-select").select_option("busy")
        await expect(member(bob, "Ann")).to_have_attribute("data-status", "busy")
        await send(bob, "said while Ann looked at the people")
        await expect(message(ann, "said while Ann looked at the people")).to_be_attached()
        await toggle.tap()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(message(ann, "said while Ann looked at the people")).to_be_in_viewport()

        await a_call_button_closes_the_people(ann, toggle)

        # Turned upright and back with the people open: they stay open in the chat's place.
        await toggle.tap()
        for size in (PHONE["viewport"], SIDEWAYS[0]):
            await ann.set_viewport_size(size)
            await expect(toggle).to_have_attribute("aria-expanded", "true")
            await expect(member(ann, "Cy")).to_be_in_viewport()
            await reachable(ann, "status-select", "people-toggle", "hangup-button")
            await fits_the_screen(ann)

        # The call ends with them open: the people beside the chat again, and no button.
        await bob.get_by_test_id("hangup-button").click()
        await expect(ann.get_by_test_id("call-panel")).to_be_hidden()
        await expect(toggle).to_be_hidden()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(member(ann, "Dee")).to_be_visible()
        await reachable(ann, "status-select", "message-input", "send-button")
        await fits_the_screen(ann)
        assert await csp_violations(ann) == []
        for other in others:
            await other.ws.close()

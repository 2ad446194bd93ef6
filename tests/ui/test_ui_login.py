"""The web UI with auth on, in Chromium against a real `mlgrid server --auth`: a page asks for a sign-in and
comes back to itself, the header shows the user, the session cookie is HttpOnly and SameSite=Lax, a MANAGE
holder grants and revokes on an experiment's and a model's page, and signing out sends back to the sign-in;
with auth off, nothing of it shows."""
import pytest
import requests
from conftest import ADMIN, ADMIN_PASSWORD, unique

PASSWORD = "correct horse battery staple"
ADMIN_AUTH = (ADMIN, ADMIN_PASSWORD)


@pytest.fixture
def auth_page(browser, auth_server):
    context = browser.new_context(base_url=auth_server["url"], viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(20_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def api(auth_server, path: str, body: dict, auth=ADMIN_AUTH) -> dict:
    answer = requests.post(f"{auth_server['url']}{path}", json=body, auth=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def grants(auth_server, resource_type: str, resource_id: str) -> dict:
    answer = requests.get(f"{auth_server['url']}/api/2.0/mlgrid/permissions/resource", auth=ADMIN_AUTH, timeout=10,
                          params={"resource_type": resource_type, "resource_id": resource_id})
    return {g["username"]: g["permission"] for g in answer.json().get("permissions", [])}


def sign_in(page, username=ADMIN, password=ADMIN_PASSWORD):
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form[action='/login'] button[type=submit]")


def grant_in_panel(page, username: str, permission: str):
    panel = page.locator("details.permissions:not([hidden])")
    panel.wait_for()
    if not panel.evaluate("details => details.open"):
        panel.locator("summary").click()
    panel.locator("input[name=grant-username]").fill(username)
    panel.locator("select[name=grant-permission]").select_option(permission)
    panel.locator("form.grant button").click()
    panel.locator(f"tr[data-username='{username}'] td.permission:text-is('{permission}')").wait_for()
    return panel


def test_sign_in_come_back_grant_and_sign_out(auth_page, auth_server):
    page = auth_page
    experiment_id = api(auth_server, "/api/2.0/mlflow/experiments/create", {"name": unique("ui-auth")})["experiment_id"]
    user = unique("viewer")
    api(auth_server, "/api/2.0/mlflow/users/create", {"username": user, "password": PASSWORD})

    page.goto(f"/#/experiments/{experiment_id}")
    page.wait_for_url("**/login?next=*")  # the first 401 of /ajax-api sends the browser to the sign-in page
    sign_in(page, password="not the password!")
    assert "Wrong username or password." in page.inner_text(".error")
    sign_in(page)
    page.wait_for_url(f"**/#/experiments/{experiment_id}")
    page.wait_for_selector("header .user:not([hidden])")
    assert page.inner_text("header .username") == ADMIN
    cookie = next(c for c in page.context.cookies() if c["name"] == "mlgrid_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach

    panel = grant_in_panel(page, user, "READ")
    assert grants(auth_server, "experiment", experiment_id)[user] == "READ"
    assert panel.locator(f"tr[data-username='{ADMIN}'] td.permission").inner_text() == "MANAGE"  # the creator
    grant_in_panel(page, user, "EDIT")  # replaces the grant
    assert grants(auth_server, "experiment", experiment_id)[user] == "EDIT"
    panel.locator(f"tr[data-username='{user}'] button").click()
    panel.locator(f"tr[data-username='{user}']").wait_for(state="detached")
    assert user not in grants(auth_server, "experiment", experiment_id)

    page.click("header .user button")  # sign out
    page.wait_for_url("**/login")
    assert not [c for c in page.context.cookies() if c["name"] == "mlgrid_session"]
    page.goto("/#/models")
    page.wait_for_url("**/login?next=%2F%23%2Fmodels")


def test_a_manager_grants_on_a_model_and_others_see_no_panel(auth_page, auth_server):
    page = auth_page
    model = unique("model")
    api(auth_server, "/api/2.0/mlflow/registered-models/create", {"name": model})
    manager, reader = unique("manager"), unique("reader")
    for name in (manager, reader):
        api(auth_server, "/api/2.0/mlflow/users/create", {"username": name, "password": PASSWORD})
    api(auth_server, "/api/3.0/mlflow/users/permissions/grant",
        {"username": manager, "resource_type": "registered_model", "resource_id": model, "permission": "MANAGE"})
    api(auth_server, "/api/3.0/mlflow/users/permissions/grant",
        {"username": reader, "resource_type": "registered_model", "resource_id": model, "permission": "READ"})

    page.goto(f"/login?next=%2F%23%2Fmodels%2F{model}")
    sign_in(page, reader, PASSWORD)
    page.wait_for_url(f"**/#/models/{model}")
    page.wait_for_selector("section.card h3:has-text('Versions')")
    assert page.inner_text("header .username") == reader
    assert page.locator("details.permissions").is_hidden()  # READ only: no panel
    page.click("header .user button")
    page.wait_for_url("**/login")

    page.goto(f"/login?next=%2F%23%2Fmodels%2F{model}")
    sign_in(page, manager, PASSWORD)
    page.wait_for_url(f"**/#/models/{model}")
    grant_in_panel(page, reader, "EDIT")
    assert grants(auth_server, "registered_model", model)[reader] == "EDIT"


def test_with_auth_off_the_ui_shows_no_user_and_no_permissions(page, mlflow_server_url):
    answer = requests.post(f"{mlflow_server_url}/api/2.0/mlflow/experiments/create", json={"name": unique("open")},
                           timeout=10)
    page.goto(f"/#/experiments/{answer.json()['experiment_id']}")
    page.wait_for_selector(".run-count:has-text('0 runs')")
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(f"/#/experiments/{answer.json()['experiment_id']}")  # no sign-in asked
    assert page.locator("header .user").is_hidden() and page.locator("details.permissions").is_hidden()

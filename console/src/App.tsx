import type { SessionInfo } from "../../contracts/model/people.js";
import { useEffect, useState } from "preact/hooks";
import { getSession, setCsrf, signOut, whenUnauthorized } from "./api.js";
import { t, tk, useLang } from "./i18n.js";
import { LangSwitch } from "./components/LangSwitch.js";
import { navigate, onLink, useRoute } from "./router.js";
import { SignIn } from "./pages/SignIn.js";
import { Queue } from "./pages/Queue.js";
import { TaskDetail } from "./pages/TaskDetail.js";

/*
 * The console's frame: who is signed in (GET /api/v1/session on load: the cookie is httpOnly, so
 * only the server knows), the header with the language switch and sign-out, and the page of the
 * route. Any 401 from the API sends the user back to sign-in.
 */

export function App() {
  useLang();
  const route = useRoute();
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);

  useEffect(() => {
    whenUnauthorized(() => {
      setCsrf(undefined);
      setSession(null);
    });
    getSession().then(
      (s) => {
        setCsrf(s.csrfToken);
        setSession(s);
      },
      () => setSession(null),
    );
  }, []);

  if (session === undefined) return <p class="loading">{t("loading")}</p>;
  if (session === null) {
    return (
      <SignIn
        onSignedIn={(s) => {
          setCsrf(s.csrfToken);
          setSession(s);
          if (route.page === "signin") navigate("/", true);
        }}
      />
    );
  }
  const user = session.user;
  const out = () => {
    void signOut().finally(() => {
      setCsrf(undefined);
      setSession(null);
    });
  };
  return (
    <div class="shell">
      <header class="top">
        <a href="/" class="brand" onClick={onLink("/")}>
          {t("appName")}
        </a>
        <nav>
          <a
            href="/"
            onClick={onLink("/")}
            aria-current={route.page === "queue" ? "page" : undefined}
          >
            {t("queue")}
          </a>
        </nav>
        <span class="who" data-testid="who">
          {t("signedInAs", {
            name: user.name,
            roles: user.roles.map((r) => tk("role", r)).join("、"),
          })}
        </span>
        <LangSwitch />
        <button type="button" class="secondary small" onClick={out} data-testid="signout">
          {t("signOut")}
        </button>
      </header>
      <main>
        {route.page === "task" ? (
          <TaskDetail key={route.id} id={route.id} user={user} />
        ) : (
          <Queue user={user} />
        )}
      </main>
    </div>
  );
}

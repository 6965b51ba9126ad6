import type { SessionInfo } from "../../contracts/model/people.js";
import type { FunctionComponent } from "preact";
import { useEffect, useState } from "preact/hooks";
import { getSession, setCsrf, signOut, whenUnauthorized } from "./api.js";
import { t, tk, useLang } from "./i18n.js";
import { LangSwitch } from "./components/LangSwitch.js";
import { navigate, onLink, useRoute } from "./router.js";
import { SignIn } from "./pages/SignIn.js";
import { Queue } from "./pages/Queue.js";
import { TaskDetail } from "./pages/TaskDetail.js";
import { Devices } from "./pages/Devices.js";
import { DevicePage } from "./pages/DevicePage.js";
import { Sites } from "./pages/Sites.js";
import { Reports } from "./pages/Reports.js";
import { Rules } from "./pages/Rules.js";
import { DeadLetters } from "./components/DeadLetters.js";
import { Emergency } from "./pages/Emergency.js";
import { Public } from "./pages/Public.js";

type MapPageType = FunctionComponent<{ user: SessionInfo["user"] }>;

/** The map page and Leaflet, loaded when the map is first opened (outside the first load). */
function LazyMap(props: { user: SessionInfo["user"] }) {
  const [page, setPage] = useState<{ Page: MapPageType } | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    import("./pages/MapPage.js").then(
      (m) => setPage({ Page: m.MapPage }),
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
  }, []);
  if (error !== undefined)
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  return page === undefined ? (
    <p class="loading">{t("loading")}</p>
  ) : (
    <page.Page user={props.user} />
  );
}

const NAV = [
  ["/", "queue", "queue"],
  ["/emergency", "emergency", "emergencyBoard"],
  ["/map", "map", "map"],
  ["/devices", "devices", "devices"],
  ["/sites", "sites", "sites"],
  ["/rules", "rules", "rules"],
  ["/reports", "reports", "reports"],
] as const;

/*
 * The console's frame: who is signed in (GET /api/v1/session on load: the cookie is httpOnly, so
 * only the server knows), the header with the language switch and sign-out, and the page of the
 * route. Any 401 from the API sends the user back to sign-in.
 */

export function App() {
  useLang();
  const route = useRoute();
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);

  const isPublic = route.page === "public";
  useEffect(() => {
    // The public page asks nobody who they are.
    if (isPublic) return;
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
  }, [isPublic]);

  if (isPublic) return <Public />;
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
          {NAV.map(([path, page, label]) => (
            <a
              key={path}
              href={path}
              onClick={onLink(path)}
              aria-current={
                route.page === page || (page === "devices" && route.page === "device")
                  ? "page"
                  : undefined
              }
            >
              {t(label)}
            </a>
          ))}
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
        ) : route.page === "devices" ? (
          <Devices user={user} />
        ) : route.page === "device" ? (
          <DevicePage key={route.id} id={route.id} />
        ) : route.page === "rules" ? (
          <Rules user={user} />
        ) : route.page === "reports" ? (
          <Reports user={user} />
        ) : route.page === "sites" ? (
          <Sites />
        ) : route.page === "dead-letters" ? (
          <section class="detail" aria-labelledby="dl-title">
            <h1 id="dl-title">{t("deadLetters")}</h1>
            <DeadLetters />
          </section>
        ) : route.page === "emergency" ? (
          <Emergency user={user} />
        ) : route.page === "map" ? (
          <LazyMap user={user} />
        ) : (
          <Queue user={user} />
        )}
      </main>
    </div>
  );
}

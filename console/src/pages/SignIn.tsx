import type { SessionInfo } from "../../../contracts/model/people.js";
import { useState } from "preact/hooks";
import { ApiError, signIn } from "../api.js";
import { t } from "../i18n.js";
import { LangSwitch } from "../components/LangSwitch.js";

/** Sign-in: POST /api/v1/session sets the httpOnly cookie and answers the CSRF token. */
export function SignIn(props: { onSignedIn: (session: SessionInfo) => void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);

  const submit = (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    signIn(username.trim(), password).then(
      (session) => props.onSignedIn(session),
      (e: unknown) => {
        setBusy(false);
        setError(
          e instanceof ApiError && e.status === 401
            ? t("wrongPassword")
            : e instanceof Error
              ? e.message
              : String(e),
        );
      },
    );
  };
  return (
    <div class="signin">
      <form class="card" onSubmit={submit} aria-labelledby="signin-title">
        <div class="signin-head">
          <h1 id="signin-title">{t("signInTitle")}</h1>
          <LangSwitch />
        </div>
        <p class="muted">{t("appName")}</p>
        <label>
          {t("username")}
          <input
            name="username"
            autoComplete="username"
            autoCapitalize="none"
            required
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </label>
        <label>
          {t("password")}
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {error !== undefined && (
          <p class="error" role="alert" data-testid="signin-error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? t("signingIn") : t("signIn")}
        </button>
        <p class="hint">{t("firstStartHint")}</p>
      </form>
    </div>
  );
}

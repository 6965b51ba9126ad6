import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { t } from "../i18n.js";
import { onLink } from "../router.js";
import { formatLocal } from "../time.js";

/*
 * Dead letters (GET /api/v1/dead-letters, docs/api.md section 9): messages the ingest did not
 * store, newest first, with the reason, what exactly was wrong and the raw payload, for one device
 * or all. 50 a page; "older" pages on with `before`.
 */

interface DeadLetter {
  id: number;
  receivedAt: string;
  topic: string;
  deviceId: string | null;
  seq: number | null;
  reason: string;
  detail: string;
  payload: string | null;
  payloadBase64: string;
}

const PAGE = 50;

export function DeadLetters(props: { deviceId?: string }) {
  const [rows, setRows] = useState<DeadLetter[] | undefined>(undefined);
  const [more, setMore] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);

  const load = (before?: number) => {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (props.deviceId !== undefined) query.set("device", props.deviceId);
    if (before !== undefined) query.set("before", String(before));
    api<{ deadLetters: DeadLetter[] }>("GET", `/api/v1/dead-letters?${query.toString()}`).then(
      (r) => {
        setRows((old) =>
          before === undefined ? r.deadLetters : [...(old ?? []), ...r.deadLetters],
        );
        setMore(r.deadLetters.length === PAGE);
      },
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
  };
  useEffect(() => load(), [props.deviceId]);

  if (error !== undefined)
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  if (rows === undefined) return <p class="loading">{t("loading")}</p>;
  if (rows.length === 0) return <p class="muted">{t("deadLettersNone")}</p>;
  return (
    <div class="dead-letters" data-testid="dead-letters">
      <ul>
        {rows.map((d) => (
          <li key={d.id} data-dead-letter={d.id} data-reason={d.reason}>
            <div>
              <strong class="reason">{d.reason}</strong>{" "}
              <span class="muted small">
                #{d.id} · {formatLocal(d.receivedAt, { seconds: true })}
                {d.seq === null ? "" : ` · seq ${d.seq}`}
              </span>
              {props.deviceId === undefined && d.deviceId !== null && (
                <>
                  {" · "}
                  <a
                    href={`/devices/${encodeURIComponent(d.deviceId)}`}
                    onClick={onLink(`/devices/${encodeURIComponent(d.deviceId)}`)}
                  >
                    {d.deviceId}
                  </a>
                </>
              )}
            </div>
            <div class="detail-text">{d.detail}</div>
            <details>
              <summary>
                {t("rawPayload")} <code>{d.topic}</code>
              </summary>
              <pre>{d.payload ?? `base64: ${d.payloadBase64}`}</pre>
            </details>
          </li>
        ))}
      </ul>
      {more && (
        <button
          type="button"
          class="secondary small"
          onClick={() => load(rows[rows.length - 1]?.id)}
        >
          {t("older")}
        </button>
      )}
    </div>
  );
}

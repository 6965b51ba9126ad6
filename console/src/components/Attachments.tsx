import type { Attachment, Task } from "../../../contracts/model/tasks.js";
import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "../api.js";
import { t } from "../i18n.js";
import { formatLocal } from "../time.js";

/*
 * A task's attachments (docs/api.md section 16): field photos and documents, oldest first, each
 * downloadable; whoever acts on the task's kind uploads one while it is open (on a phone the file
 * picker offers the camera, and 拍照 opens it directly). The server checks the type by the file's first bytes and the size;
 * its refusal is shown as it came. The upload's SHA-256 joins the audit trail.
 */

const size = (bytes: number): string =>
  bytes >= 1_048_576
    ? `${(bytes / 1_048_576).toFixed(1)} MB`
    : `${Math.max(1, Math.round(bytes / 1024))} KB`;

/** The photo types the server takes (tasks/attachments.ts checks the bytes). */
const PHOTO_TYPES = "image/jpeg,image/png,image/webp,image/heic,image/heif";

/** A file input drawn as a button. */
function Picker(props: {
  label: string;
  name: string;
  accept: string;
  capture?: "environment";
  testid: string;
  busy: boolean;
  onChange: (event: Event) => void;
}) {
  return (
    <label class="upload">
      <span class="button secondary small">{props.label}</span>
      <input
        type="file"
        name={props.name}
        accept={props.accept}
        {...(props.capture === undefined ? {} : { capture: props.capture })}
        disabled={props.busy}
        onChange={props.onChange}
        data-testid={props.testid}
      />
    </label>
  );
}

export function Attachments(props: { task: Task; mayUpload: boolean; onUploaded: () => void }) {
  const { task } = props;
  const base = `/api/v1/tasks/${encodeURIComponent(task.id)}/attachments`;
  const [list, setList] = useState<Attachment[] | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);

  const load = () =>
    api<{ attachments: Attachment[] }>("GET", base).then(
      (r) => setList(r.attachments),
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
  useEffect(() => void load(), [task.id]);

  const upload = (event: Event) => {
    const input = event.currentTarget as HTMLInputElement;
    const file = input.files?.[0];
    if (file === undefined) return;
    setBusy(true);
    setError(undefined);
    api("POST", `${base}?filename=${encodeURIComponent(file.name)}`, file).then(
      () => {
        setBusy(false);
        input.value = "";
        void load();
        props.onUploaded();
      },
      (e: unknown) => {
        setBusy(false);
        input.value = "";
        setError(
          e instanceof ApiError ? `${t("refused", { status: e.status })}: ${e.message}` : String(e),
        );
      },
    );
  };

  return (
    <div class="attachments" data-testid="attachments">
      {list === undefined ? (
        <p class="loading">{t("loading")}</p>
      ) : list.length === 0 ? (
        <p class="muted">{t("attachmentsNone")}</p>
      ) : (
        <ul>
          {list.map((a) => (
            <li key={a.sha256} data-attachment={a.sha256}>
              <a href={`${base}/${a.sha256}`} download={a.filename}>
                {a.filename}
              </a>{" "}
              <span class="muted small">
                {a.type} · {size(a.size)} · {a.by} · {formatLocal(a.at)}
              </span>
              <div class="muted small">
                <code>SHA-256 {a.sha256}</code>
              </div>
            </li>
          ))}
        </ul>
      )}
      {props.mayUpload && task.state !== "closed" && (
        <div class="upload-row">
          <Picker
            label={busy ? t("uploading") : t("upload")}
            name="attachment"
            accept={`${PHOTO_TYPES},application/pdf`}
            testid="upload"
            busy={busy}
            onChange={upload}
          />
          {/* On a phone: straight to the back camera (a desktop browser opens its file picker). */}
          <Picker
            label={t("takePhoto")}
            name="photo"
            accept={PHOTO_TYPES}
            capture="environment"
            testid="camera"
            busy={busy}
            onChange={upload}
          />
        </div>
      )}
      {error !== undefined && (
        <p class="error" role="alert" data-testid="upload-error">
          {error}
        </p>
      )}
    </div>
  );
}

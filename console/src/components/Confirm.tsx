import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { t } from "../i18n.js";

/*
 * A confirmation dialog (the native <dialog>, modal, Escape cancels): a question, optional
 * fields (a reason), and Confirm / Cancel. `confirmDisabled` keeps Confirm off until a required
 * reason is given.
 */
export function Confirm(props: {
  title: string;
  children?: ComponentChildren;
  confirmLabel?: string;
  confirmDisabled?: boolean;
  busy?: boolean;
  error?: string | undefined;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog !== null && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      class="confirm"
      aria-labelledby="confirm-title"
      onCancel={(e) => {
        e.preventDefault();
        props.onCancel();
      }}
    >
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          if (props.confirmDisabled !== true && props.busy !== true) props.onConfirm();
        }}
      >
        <h2 id="confirm-title">{props.title}</h2>
        {props.children}
        {props.error !== undefined && (
          <p class="error" role="alert">
            {props.error}
          </p>
        )}
        <div class="buttons">
          <button type="button" class="secondary" onClick={props.onCancel}>
            {t("cancel")}
          </button>
          <button
            type="submit"
            class="primary"
            data-testid="confirm"
            disabled={props.confirmDisabled === true || props.busy === true}
          >
            {props.confirmLabel ?? t("confirm")}
          </button>
        </div>
      </form>
    </dialog>
  );
}

import { type Lang, setLang, t, useLang } from "../i18n.js";

/** The language switch (zh-CN, en), kept in the browser. */
export function LangSwitch() {
  const current = useLang();
  return (
    <label class="lang">
      <span class="sr-only">{t("language")}</span>
      <select
        data-testid="lang"
        value={current}
        onChange={(e) => setLang(e.currentTarget.value as Lang)}
      >
        <option value="zh-CN">中文</option>
        <option value="en">English</option>
      </select>
    </label>
  );
}

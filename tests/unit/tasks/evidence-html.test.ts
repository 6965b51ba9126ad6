import { describe, expect, it } from "vitest";
import type { EvidencePackageV1 } from "../../../contracts/model/tasks.js";
import {
  escapeHtml,
  evidenceHtml,
  renderEvidenceDocument,
  shortCode,
} from "../../../tasks/evidence-html.js";
import {
  FIXTURE_KEY_ID,
  HOSTILE_MODEL,
  methanePackage,
  missingCalibrationPackage,
  nightNoiseBody,
  nightNoisePackage,
  seal,
} from "./evidence-document-fixtures.js";

/*
 * The printable evidence document (tasks/evidence-html.ts) of realistic format-2 packages: local
 * times with their offset, Chinese by default and English on request, rounded values with units,
 * a sentence for the finding, every member of the package, warnings, escaping, the QR code and the
 * signature fields; a format-1 package rendered plainly and marked unsigned.
 */

const VERIFY = "https://citywatch.example.gov.cn/api/v1/evidence/keys";

/** The visible text of a page: tags dropped, entities decoded, white space collapsed. */
function text(html: string): string {
  return html
    .replace(/<style>[\s\S]*?<\/style>/g, " ")
    .replace(/<svg[\s\S]*?<\/svg>/g, " ")
    .replace(/<[^>]+>/g, " ")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ");
}

/** The rows of the readings table. */
const readingRows = (html: string): string[] =>
  /<table class="grid readings">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/
    .exec(html)?.[1]
    ?.match(/<tr[\s\S]*?<\/tr>/g) ?? [];

describe("printable evidence document, format 2", () => {
  const pkg = nightNoisePackage();
  const zh = renderEvidenceDocument(pkg, {
    language: "zh-CN",
    verifyUrl: VERIFY,
    generatedAt: new Date("2026-12-06T01:00:00Z"),
  });
  const zhText = text(zh);

  it("is a complete A4 page in Chinese with a CJK font stack and no script", () => {
    expect(zh.startsWith("<!doctype html>")).toBe(true);
    expect(zh).toContain('<html lang="zh-CN">');
    expect(zh).toMatch(/@page \{ size: A4; margin: [^}]+\}/);
    expect(zh).toContain(
      '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "SimSun", sans-serif',
    );
    expect(zh).not.toMatch(/<script/i);
    expect(zh).not.toMatch(/<[^>]*\son[a-z]+=/i); // no event handler attribute on any tag
    expect(zh).not.toMatch(/<[^>]*\s(?:src|href)=/i); // loads nothing
  });

  it("reads in the officer's order: header, warnings, party, rule, finding, readings, devices, …, signatures", () => {
    const order = [
      "非现场执法证据",
      "提示：本证据存在的瑕疵",
      "当事人与场所",
      "适用规则",
      "违法事实（监测结论）",
      "所用监测数据（20 条）",
      "监测设备",
      "许可",
      "数据传输路径",
      "封存时的案件记录",
      "完整性与核验",
      "执法人员与当事人",
    ].map((heading) => zhText.indexOf(heading));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(zhText).toContain("案件编号 enf-000042");
    expect(zhText).toContain("证据包 第 2 号");
  });

  it("states the finding in one sentence, in local time, rounded, with units", () => {
    expect(zh).toContain(
      '<p class="finding" id="finding-sentence">2026-12-05 22:10–22:30 (UTC+08:00) 夜间 等效连续A声级 LAeq 64.2 dB(A)，超过限值 55 dB(A)</p>',
    );
    expect(zhText).toContain("监测值（按标准修约） 64.2 dB(A)");
    expect(zhText).toContain("限值 55 dB(A)");
    expect(zhText).toContain("按所列数据复核计算 64.2 dB(A)：与判定值一致");
    expect(zhText).toContain("判定时间 2026-12-05 22:30:00 (UTC+08:00)");
    expect(zhText).toContain(
      "计算方法 等效连续A声级 LAeq的能量（对数）平均值（滑动时段 20 分钟）；仅计夜间数据，与限值比较；数据覆盖时段的 100%",
    );
  });

  it("prints no UTC clock time, raw float, developer text or unexplained dash", () => {
    expect(zhText).not.toMatch(/(?<![\d:])14:[0-5]\d/); // 22:xx local is 14:xx UTC
    expect(zhText).not.toContain("64.2119");
    expect(zhText).not.toContain("> 55");
    expect(zhText).not.toContain(": true");
    expect(zhText).not.toContain("energy_mean");
    expect(zhText).not.toContain("—");
    // No value with more than 3 decimals (coordinates aside: they are printed to 6).
    expect(zhText.replace(/纬度 [\d.]+，经度 [\d.]+/g, "")).not.toMatch(/\d\.\d{4,}/);
  });

  it("lists every reading with local time, units, quality in words, use, trigger, receive time and seq", () => {
    const rows = readingRows(zh);
    expect(rows).toHaveLength(20);
    expect(zhText).toContain("LAeq dB(A)");
    expect(zhText).toContain("LAmax dB(A)");
    const first = text(rows[0] ?? "");
    expect(first).toContain("2026-12-05 22:11:00 (UTC+08:00)");
    expect(first).toContain("63.8");
    expect(first).toContain("73.1");
    expect(first).toContain("正常 采用");
    expect(first).toContain("2026-12-05 22:11:02 (UTC+08:00)"); // received
    expect(first).toContain("4000");
    // 64 is printed as the column prints its values: 64.0
    expect(text(rows[5] ?? "")).toContain("64.0");
    expect(rows[5]).toContain('class="unusable"');
    expect(text(rows[5] ?? "")).toContain("校准中 质量门排除");
    expect(rows[19]).toContain('class="trigger"');
    expect(text(rows[19] ?? "")).toContain("★");
    expect(rows.filter((r) => r.includes("★"))).toHaveLength(1);
  });

  it("shows party, site, rule with clause and legal basis apart, placeholders marked", () => {
    for (const fact of [
      "统一社会信用代码 91510100MA61234567",
      "地址 18 Binjiang Road, Jinjiang District, Chengdu",
      "联系人 Wang Li，电话 028-8888 1234",
      "场所 Riverside Tower construction site",
      "场所类型 建筑施工工地",
      "场所地址 20 Binjiang Road, Jinjiang District, Chengdu",
      "区 / 街道 / 网格 Jinjiang / Hejiangting / JJ-HJT-007",
      "位置（WGS-84） 纬度 30.6571，经度 104.0817",
      "限值标准条款 GB 12523-2011 §4.1, Table 1",
      "规则编号与版本 noise.construction.night.laeq，第 3 版",
      "Noise Pollution Prevention and Control Law 2021 Art. 43: No construction",
      "规则可信度 已按标准原文核实",
      "证据说明 Night-time LAeq over 20 minutes at the site boundary",
    ])
      expect(zhText).toContain(fact);
    // Art. 77 is a placeholder: marked beside it, Art. 43 is not.
    expect(zhText).toMatch(/Art\. 77: [^[]*\[占位值：未经标准或法律原文核实，引用前须核对\]/);
    expect(zhText.slice(zhText.indexOf("Art. 43:"), zhText.indexOf("Art. 77:"))).not.toContain(
      "占位值",
    );
  });

  it("shows devices with approval and calibration, a red box for the expired calibration", () => {
    for (const fact of [
      "类型 噪声监测仪",
      "出厂编号 0017",
      "型式批准 / 认证编号 CPA 2019-F123",
      "检定 / 校准证书编号 SCJL-2025-0456",
      "校准日期 2025-11-20",
      "校准有效期至 2026-11-19",
      "校准状态 已过期",
    ])
      expect(zhText).toContain(fact);
    expect(zh).toContain(
      '<div class="warning" role="note"><strong>提示</strong> 判定时该设备校准已过期<br><span class="about">涉及：noise-17</span></div>',
    );
    expect(zh.match(/class="warning"/g)).toHaveLength(1); // the sealer's warning, not twice
  });

  it("shows permits, transport path, audit trail in local time and state words", () => {
    expect(zhText).toContain("dust_control_plan JJ-2026-0311 2026-03-01 至 2027-02-28");
    expect(zhText).toContain("可豁免本规则的许可 无：判定时没有可豁免本规则的有效许可");
    expect(zhText).toContain("数据路径 设备 noise-17 → 边缘代理 → MQTT 消息服务器 → 接入存储服务");
    expect(zhText).toContain("各设备最后确认的报文序号 noise-17: 4019");
    expect(zhText).toContain(
      "2026-12-05 22:30:01 (UTC+08:00) rules 立案 → 已立案 night construction noise",
    );
    expect(zhText).toContain("2026-12-05 22:30:02 (UTC+08:00) router 分派");
    expect(zhText).toContain("上一证据包 第 1 号，SHA-256 9f2c 41d0 7be3");
  });

  it("prints the integrity block: hash, short code, key fingerprint, verification address as QR", () => {
    expect(shortCode(pkg.hash.value)).toMatch(/^[0-9a-f]{4} [0-9a-f]{4} [0-9a-f]{4}$/);
    expect(zh).toContain(
      `<span class="short mono" id="short-code">${shortCode(pkg.hash.value)}</span>`,
    );
    // In full and unbroken, to copy into a verifier; the short code is grouped to read aloud.
    expect(zh).toContain(`<span class="mono" id="package-hash">${pkg.hash.value}</span>`);
    expect(zhText).toContain(`Ed25519，密钥指纹 ${FIXTURE_KEY_ID}`);
    expect(zhText).toContain(pkg.signature.value);
    expect(zh).toContain(`<span class="mono" id="verify-url">${VERIFY}</span>`);
    expect(zhText).toContain(`citywatch evidence verify <证据包文件> --keys ${VERIFY}`);
    const svg =
      /<svg class="qr" role="img" aria-label="公钥地址二维码"[^>]*viewBox="0 0 (\d+) \1"[\s\S]*?<\/svg>/.exec(
        zh,
      );
    expect(svg).not.toBeNull();
    expect(svg?.[0]).toMatch(/<path [^>]*d="M[^"]{200,}"/); // modules drawn as a path
    // A signed link expires: the page prints the keys' address, never a signed link.
    expect(zh).not.toContain("sig=");
    expect(zh).not.toContain("expires=");
  });

  it("has the officers' and the party's fields and the party's rights (Art. 41)", () => {
    const block = text(/<section id="signatures"[\s\S]*?<\/section>/.exec(zh)?.[0] ?? "");
    expect(block).toContain("执法人员 1 姓名 执法证号 签名 日期");
    expect(block).toContain("执法人员 2 姓名 执法证号 签名 日期");
    expect(block).toContain("当事人（或委托代理人） 当事人签字 日期");
    expect(block).toContain("《中华人民共和国行政处罚法》（2021年修订）第四十一条");
    expect(block).toContain("陈述和申辩");
  });

  it("escapes every value: a hostile device model and party name stay text", () => {
    expect(zh).not.toContain(HOSTILE_MODEL);
    expect(zh).not.toContain("<script>");
    expect(zh).not.toContain("<img");
    expect(zh).toContain(
      "AWA6228+&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;",
    );
    expect(zh).toContain("Acme &lt;Build&gt; &amp; &quot;Sons&quot; Co.");
    // In the page title and the CSS footer too (a task id is data).
    const evil = seal({ ...nightNoiseBody(), taskId: 'x</title></style><script>1</script>"' });
    const html = renderEvidenceDocument(evil, { language: "zh-CN" });
    expect(html).not.toContain("<script>");
    expect(html).not.toContain("</style><");
    expect(html.match(/<\/style>/g)).toHaveLength(1);
    expect(html.match(/<\/title>/g)).toHaveLength(1);
  });

  it("renders in English on request", () => {
    const en = renderEvidenceDocument(pkg, { language: "en", verifyUrl: VERIFY });
    const enText = text(en);
    expect(en).toContain('<html lang="en">');
    expect(enText).toContain("Off-site enforcement evidence");
    expect(enText).toContain(
      "2026-12-05 22:10–22:30 (UTC+08:00) night-time equivalent continuous A-weighted sound level LAeq 64.2 dB(A), above the limit 55 dB(A)",
    );
    expect(enText).toContain("Calibration state EXPIRED");
    expect(enText).toContain("Enforcement ID no.");
    expect(enText).toContain("state their case and to defend themselves");
    expect(enText).not.toMatch(/[\u4e00-\u9fff]{3,}/); // a few characters of 陈述、申辩 aside
  });
});

describe("printable evidence document, other cases", () => {
  it("an emergency k-of-n methane task: the vote, the level's threshold, no party", () => {
    const pkg = methanePackage();
    const html = renderEvidenceDocument(pkg, { language: "zh-CN" });
    const t = text(html);
    expect(t).toContain("应急任务证据");
    expect(html).toContain(
      'id="finding-sentence">2026-12-05 22:15:00 (UTC+08:00) 3 台设备中 2 台 甲烷 超过 25 %LEL</p>',
    );
    expect(t).toContain("等级 II");
    expect(t).toContain("该等级的阈值 25 %LEL");
    expect(t).toContain("3 台设备中须有 2 台超过 25 %LEL");
    expect(t).toContain("gas-1 31.4 %LEL 正常 是");
    expect(t).toContain("gas-3 12.5 %LEL 正常 否");
    expect(t).toContain("当事人 无当事人");
    expect(t).toContain("无当事人，无需当事人签字");
    expect(t).not.toContain("当事人签字 日期");
    expect(t).toContain("法律依据 本规则未引用法律条文");
    expect(t).toContain("规则可信度 占位值（未核实）");
    expect(t).toContain("规则中未经核实的部分 condition.k: no standard sets k");
    expect(t).toContain("型式批准 / 认证编号 未登记");
    expect(t).toContain("设备 gas-1 → 设备 gas-2 → 设备 gas-3 → 边缘代理");
    expect(t).toContain("接收时间（本地）");
    expect(t).toContain("未记录"); // receivedAt and seq null, said so
    expect(t).toContain("正常 (补传)");
    // A warning code the catalogue does not know: shown with its code and escaped message.
    expect(t).toContain("提示 future_code_x（原文：something new <b>bold</b>）");
    expect(html).not.toContain("<b>bold</b>");
    // No verification address configured: said so, no QR code.
    expect(t).toContain("本服务器未配置");
    expect(html).not.toContain("<svg");
  });

  it("a device without calibration gets a red box even when the sealer gave no warning", () => {
    const html = renderEvidenceDocument(missingCalibrationPackage(), { language: "zh-CN" });
    expect(html).toContain(
      '<strong>提示</strong> 该设备未登记校准有效期，无法证明判定时校准有效<br><span class="about">涉及：noise-17</span>',
    );
    expect(text(html)).toContain("校准日期 未登记");
    expect(html).toContain('<span class="missing">未登记</span>');
  });

  it("a format-1 package: what it has, marked unsigned, times local", () => {
    const v1: EvidencePackageV1 = {
      format: "citywatch-evidence/1",
      taskId: "enf-000001",
      sequence: 1,
      createdAt: "2026-11-27T14:20:00.000Z",
      kind: "enforcement",
      rule: {
        id: "noise.construction.laeq",
        version: 1,
        title: "Construction noise",
        clause: { standard: "GB 12523-2011", section: "Table 1" },
        confidence: "verified",
        note: null,
        statement: null,
      },
      decision: {
        type: "raise",
        alarmSeq: 1,
        level: null,
        at: "2026-11-27T14:20:00.000Z",
        startedAt: "2026-11-27T14:10:00.000Z",
        detail: "LAeq 64.21191348543675 > 55: true",
        replayed: false,
      },
      computation: {
        method: "energy_mean",
        windowStart: "2026-11-27T14:00:00.000Z",
        windowEnd: "2026-11-27T14:20:00.000Z",
        value: 64.21191348543675,
        limit: 55,
      },
      subject: { type: "site", id: "s1" },
      site: {
        id: "s1",
        name: "Riverside <Tower>",
        type: "construction_site",
        area: { district: "Pudong", gridCell: "G1" },
        location: { lat: 31.2, lon: 121.5 },
        zoneClass: "2",
        regulatedParty: { name: "Acme" },
      },
      devices: [
        {
          id: "n-1",
          kind: "noise",
          model: "AWA",
          serial: "1",
          calibratedOn: null,
          calibrationDueOn: null,
          location: { lat: 31.2, lon: 121.5 },
          area: { district: "Pudong", gridCell: "G1" },
          zoneClass: "2",
        },
      ],
      readings: [
        {
          deviceId: "n-1",
          ts: "2026-11-27T14:15:00.000Z",
          quality: "normal",
          usable: true,
          values: { LAeq: 64.2 },
        },
      ],
      hash: { algorithm: "sha256", canonicalization: "RFC 8785", value: "a".repeat(64) },
    };
    const html = renderEvidenceDocument(v1, { language: "zh-CN" });
    const t = text(html);
    expect(t).toContain("格式 1，未签名");
    expect(t).toContain("未签名（格式 1）");
    expect(t).toContain("2026-11-27 22:15:00 (UTC+08:00)");
    expect(t).toContain("监测值（按标准修约） 64.2");
    expect(t).not.toContain("64.2119");
    expect(t).toContain("Riverside <Tower>");
    expect(html).not.toContain("<Tower>");
    expect(html).toContain("该设备未登记校准有效期");
    expect(t).toContain("当事人签字");
    // The old English entry point still answers, now with the new document.
    expect(evidenceHtml(v1)).toContain('<html lang="en">');
    expect(text(evidenceHtml(v1))).toContain("Format 1, unsigned");
  });

  it("deadman, state, quality and rate-of-rise findings read in words", () => {
    const base = nightNoiseBody();
    const c = base.computation;
    const doc = (computation: Partial<typeof c>, extra: Partial<typeof base> = {}) =>
      text(
        renderEvidenceDocument(seal({ ...base, ...extra, computation: { ...c, ...computation } }), {
          language: "zh-CN",
        }),
      );
    const deadman = doc({
      conditionType: "deadman",
      quantity: null,
      aggregate: "silence",
      windowMs: null,
      period: null,
      value: 7_500_000,
      recomputed: 7_500_000,
      reported: "7500000",
      limit: 3_600_000,
      unit: "ms",
    });
    expect(deadman).toContain("设备自 2026-12-05 22:10:00 (UTC+08:00) 起无数据上报");
    expect(deadman).toContain("监测值（按标准修约） 2 小时 5 分钟");
    expect(deadman).toContain("限值 1 小时");
    expect(deadman).toContain("2 小时 5 分钟：与判定值一致");
    expect(deadman).not.toContain("7500000");
    const state = doc({
      conditionType: "state",
      quantity: null,
      aggregate: "latest",
      windowMs: null,
      period: null,
      value: true,
      recomputed: true,
      reported: "fanOn on and purifierOn off",
      limit: null,
      unit: null,
      terms: [
        { quantity: "fanOn", is: true },
        { quantity: "purifierOn", is: false },
      ],
      match: "all",
    });
    expect(state).toContain(
      "2026-12-05 22:30:00 (UTC+08:00) 设备运行状态：排风机 开且油烟净化器 关",
    );
    expect(state).toContain("计算方法 设备运行状态（最新一条数据）");
    expect(state).not.toContain("purifierOn off");
    const quality = doc(
      {
        conditionType: "quality",
        quantity: null,
        aggregate: "latest",
        windowMs: null,
        period: null,
        value: true,
        recomputed: true,
        reported: "flagged calibration",
        limit: null,
        unit: null,
        flags: ["fault", "calibration"],
      },
      // The flagged reading (the sixth, flagged calibration) is the one that tipped it.
      { readings: base.readings.map((r, i) => ({ ...r, trigger: i === 5 })) },
    );
    expect(quality).toContain("监测值（按标准修约） 标记为：校准中");
    expect(quality).not.toContain("flagged calibration");
    const rise = doc({
      conditionType: "rate_of_rise",
      quantity: "stage",
      aggregate: "rise",
      windowMs: 3_600_000,
      period: null,
      value: 0.52,
      recomputed: 0.52,
      reported: "0.52",
      limit: 0.3,
      unit: "m",
    });
    expect(rise).toContain(
      "2026-12-05 22:10–22:30 (UTC+08:00) 河道水位 上升 0.52 m，超过限值 0.3 m",
    );
    expect(rise).toContain("河道水位的上升幅度（滑动时段 1 小时），与限值比较");
  });

  it("has a message in both languages for every warning the package builder gives", () => {
    // The codes of tasks/evidence.ts (evidenceWarnings) and the two the document adds itself.
    const codes = [
      "device_unregistered",
      "calibration_expired",
      "calibration_missing",
      "calibration_date_missing",
      "type_approval_missing",
      "metrology_certificate_missing",
      "party_credit_code_missing",
      "rule_placeholder",
      "legal_basis_placeholder",
      "no_readings",
    ];
    const warnings = codes.map((code) => ({ code, about: "x", message: `English ${code}` }));
    for (const language of ["zh-CN", "en"] as const) {
      const t = text(renderEvidenceDocument(seal({ ...nightNoiseBody(), warnings }), { language }));
      for (const code of codes) expect(t, `${language} ${code}`).not.toContain(`English ${code}`);
    }
  });

  it("escapeHtml escapes the five characters", () => {
    expect(escapeHtml(`<img src=x onerror='alert(1)'>&"`)).toBe(
      "&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;&quot;",
    );
  });
});

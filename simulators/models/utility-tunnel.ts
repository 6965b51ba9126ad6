/**
 * Utility-tunnel (pipe gallery) segment monitor: CH4, O2, H2S, CO, temperature, humidity and the
 * sump level. The segment is a well-mixed volume ventilated at a given air-change rate, so a leak
 * source S gives dC/dt = S − ACH·C. GB 50838-2015 (docs/standards.md): normal ventilation ≥ 6 ACH,
 * accident ventilation ≥ 12 ACH started at CH4 ≥ 20 %LEL, gas supply cut at ≥ 25 %LEL — both
 * happen here, so a leak rises, is slowed by ventilation and decays after the cut.
 * Methane displaces air: O2 falls in proportion (LEL of methane ≈ 5 %vol).
 * The sump fills by seepage and ingress events; a float switch runs the pump between two levels.
 */
import type { UtilityTunnelValues } from "../../contracts/index.js";
import type { FullValues, InstrumentParams, SignalModel, TimeWindow } from "./instrument.js";
import {
  MS_PER_HOUR,
  MS_PER_MINUTE,
  driftFactor,
  localHour,
  measured,
  qualityAt,
  timestamp,
} from "./instrument.js";
import { STREAM, rngAt, steppedProcess, valueNoise } from "./random.js";

export interface GasLeak {
  readonly startMs: number;
  /** Minutes for the leak to reach full strength. Default 10. */
  readonly rampMin?: number;
  /** Minutes the leak lasts if nobody cuts the gas. Default 120. */
  readonly durationMin?: number;
  /** The CH4 level (%LEL) the leak would hold under normal ventilation. Default 60. */
  readonly equilibriumLel?: number;
}

export interface WaterIngress extends TimeWindow {
  /** Inflow to the sump while it lasts, cm/h. */
  readonly cmPerH: number;
}

export interface UtilityTunnelParams extends InstrumentParams {
  readonly leaks?: readonly GasLeak[];
  readonly ingress?: readonly WaterIngress[];
  /** Normal and accident ventilation, air changes per hour. Defaults 6 and 12 (GB 50838 §7.2.2). */
  readonly normalAch?: number;
  readonly accidentAch?: number;
  /** Background seepage into the sump, cm/h. Default 1.5. */
  readonly seepageCmPerH?: number;
  /** Float switch: pump starts at / stops at, cm. Defaults 60 / 20. */
  readonly pumpStartCm?: number;
  readonly pumpStopCm?: number;
  /** Pump drawdown rate, cm/h. Default 40. */
  readonly pumpCmPerH?: number;
  /** Compartment air temperature, °C. Default 22. */
  readonly meanTemperature?: number;
}

/** Accident ventilation starts at 20 %LEL, gas is cut at 25 %LEL (GB 50838-2015). */
const ALARM_LEL = 20;
const CUT_LEL = 25;
/** Detection-to-action delay of the ventilation and the shut-off valve, minutes. */
const RESPONSE_MIN = 2;
/** O2 in clean air, %vol. */
const O2_AIR = 20.9;

export interface TunnelState {
  /** CH4 from leaks, %LEL (background is added by the sensor). */
  readonly ch4: number;
  readonly accidentVentilation: boolean;
  /** Minutes the CH4 has been at or above the alarm / the cut level. */
  readonly minutesAboveAlarm: number;
  readonly minutesAboveCut: number;
  /** Leaks (by index) whose gas supply has been cut. */
  readonly cut: readonly number[];
  readonly sumpCm: number;
  readonly pumping: boolean;
}

export function tunnelModel(params: UtilityTunnelParams): { at(ms: number): TunnelState } {
  const leaks = params.leaks ?? [];
  const normal = params.normalAch ?? 6;
  const accident = params.accidentAch ?? 12;
  const initial: TunnelState = {
    ch4: 0,
    accidentVentilation: false,
    minutesAboveAlarm: 0,
    minutesAboveCut: 0,
    cut: [],
    sumpCm: 30,
    pumping: false,
  };
  return steppedProcess(params.epochMs, MS_PER_MINUTE, initial, (s, index) => {
    const ms = params.epochMs + index * MS_PER_MINUTE;
    let cut = s.cut;
    let source = 0; // %LEL per minute
    leaks.forEach((leak, i) => {
      const elapsedMin = (ms - leak.startMs) / MS_PER_MINUTE;
      const active = elapsedMin >= 0 && elapsedMin < (leak.durationMin ?? 120);
      if (!active || cut.includes(i)) return;
      if (s.minutesAboveCut >= RESPONSE_MIN) {
        cut = [...cut, i];
        return;
      }
      const ramp = Math.min(1, elapsedMin / Math.max(1, leak.rampMin ?? 10));
      source += (ramp * (leak.equilibriumLel ?? 60) * normal) / 60;
    });
    const accidentVentilation =
      s.minutesAboveAlarm >= RESPONSE_MIN || (s.accidentVentilation && s.ch4 >= 5);
    const k = (accidentVentilation ? accident : normal) / 60;
    const steady = source / k;
    const ch4 = steady + (s.ch4 - steady) * Math.exp(-k);

    const hourIngress = (params.ingress ?? [])
      .filter((w) => ms >= w.fromMs && ms < w.toMs)
      .reduce((sum, w) => sum + w.cmPerH, 0);
    const pumping =
      s.sumpCm >= (params.pumpStartCm ?? 60) || (s.pumping && s.sumpCm > (params.pumpStopCm ?? 20));
    const rate =
      (params.seepageCmPerH ?? 1.5) + hourIngress - (pumping ? (params.pumpCmPerH ?? 40) : 0);
    return {
      ch4,
      accidentVentilation,
      minutesAboveAlarm: ch4 >= ALARM_LEL ? s.minutesAboveAlarm + 1 : 0,
      minutesAboveCut: ch4 >= CUT_LEL ? s.minutesAboveCut + 1 : 0,
      cut,
      sumpCm: Math.max(0, s.sumpCm + rate / 60),
      pumping,
    };
  });
}

export function utilityTunnelModel(
  seed: number,
  params: UtilityTunnelParams,
): SignalModel<FullValues<UtilityTunnelValues>> {
  const truth = tunnelModel(params);
  return {
    at(ms) {
      const s = truth.at(ms);
      const rng = rngAt(seed, STREAM.measurement, Math.floor(ms / 1000));
      const gain = driftFactor(seed, ms, params);
      const background = Math.max(
        0,
        0.8 + 0.6 * valueNoise(seed, STREAM.background, ms, 6 * MS_PER_HOUR),
      );
      const ch4 = (s.ch4 + background) * gain + rng.normal(0, 0.1);
      const ch4Vol = (ch4 * 5) / 100; // %LEL → %vol for methane (LEL 5 %vol)
      const o2 = O2_AIR * (1 - ch4Vol / 100) + rng.normal(0, 0.03);
      // Stagnant sump water releases H2S; a deep sump smells.
      const h2s = 0.2 + 0.004 * s.sumpCm + 0.1 * Math.abs(rng.normal());
      const co = 1 + 0.4 * Math.abs(valueNoise(seed, STREAM.events, ms, 3 * MS_PER_HOUR));
      // Underground: small, lagged diurnal swing.
      const temperature =
        (params.meanTemperature ?? 22) +
        0.8 * Math.cos(((localHour(ms) - 17) / 24) * 2 * Math.PI) +
        rng.normal(0, 0.05);
      const humidity =
        78 + 0.1 * s.sumpCm + 4 * valueNoise(seed, STREAM.weather, ms, 8 * MS_PER_HOUR);
      return {
        ts: timestamp(ms),
        quality: qualityAt(seed, ms, params),
        values: {
          ch4: measured("utility_tunnel", "ch4", ch4, 1),
          o2: measured("utility_tunnel", "o2", o2, 2),
          h2s: measured("utility_tunnel", "h2s", h2s, 2),
          co: measured("utility_tunnel", "co", co, 1),
          temperature: measured("utility_tunnel", "temperature", temperature, 1),
          humidity: measured("utility_tunnel", "humidity", humidity, 0),
          sumpLevel: measured("utility_tunnel", "sumpLevel", s.sumpCm + rng.normal(0, 0.3), 1),
        },
      };
    },
  };
}

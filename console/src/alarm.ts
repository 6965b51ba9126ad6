import type { Task } from "../../contracts/model/tasks.js";

/*
 * The alarm of a severe emergency, shared by the queue and the emergency board: a level I or II
 * emergency that appears (or is raised to I/II) sounds three tones and shows an alarm bar.
 */

/** An emergency at level I or II. */
export const isSevere = (task: Task): boolean =>
  task.kind === "emergency" && (task.level === "I" || task.level === "II");

/** Three short tones (Web Audio: nothing to download); silent where the browser allows no sound. */
export function beep(): void {
  try {
    const audio = new AudioContext();
    for (let i = 0; i < 3; i++) {
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.2;
      tone.connect(gain).connect(audio.destination);
      tone.start(audio.currentTime + i * 0.35);
      tone.stop(audio.currentTime + i * 0.35 + 0.2);
    }
    setTimeout(() => void audio.close(), 1_500);
  } catch {
    // No audio: the alarm is still shown.
  }
}

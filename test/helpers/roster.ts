// Roster validation in unit tests: the problems a roster text is refused with.

import { ConfigError, parseRoster } from '../../src/config/roster.js';

/** Every problem `parseRoster` names for `text` (key path first), or [] when it is valid. */
export function rosterProblems(text: string, baseDir = '/etc/beamgate'): string[] {
  try {
    parseRoster(text, baseDir);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

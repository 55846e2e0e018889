// The daemon's logger: winston, one line per event on stderr (where systemd's journal collects it), with the
// connection's context (peer address, client fingerprint) attached by child loggers.

import winston from 'winston';

export type Logger = winston.Logger;

export function createLogger(level: string): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.printf(({ timestamp, level: lineLevel, message, ...context }) => {
        const details = Object.entries(context)
          .map(([key, value]) => `${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`)
          .join(' ');
        return `${String(timestamp)} ${lineLevel} ${String(message)}${details === '' ? '' : ` ${details}`}`;
      }),
    ),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
}

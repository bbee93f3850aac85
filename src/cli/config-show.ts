import { tomlKey, type Config } from '../config/config.js';
import { CONFIG_HELP, CONFIG_OPTIONS, loadFromOptions, type Values } from './config-options.js';

export const CONFIG_SHOW_HELP = `Usage: icetray config show [options]

Print the config in force — each value and where it came from (default, which file and key,
which flag) — and the keys of a real runtime's config that icetray cannot honour.

Options:
${CONFIG_HELP}  --output FORMAT     table (default) or json
  -h, --help          show this help
`;

export const CONFIG_SHOW_OPTIONS = { ...CONFIG_OPTIONS, output: { type: 'string' } } as const;

export function configShow(values: Values): Promise<number> {
  const loaded = loadFromOptions(values);
  if (values['output'] === 'json') {
    process.stdout.write(
      `${JSON.stringify({ file: loaded.file ?? null, values: loaded.config, origins: loaded.origins, warnings: loaded.warnings }, null, 2)}\n`,
    );
    return Promise.resolve(0);
  }
  const rows = (Object.keys(loaded.config) as (keyof Config)[]).map((field) => [
    tomlKey(field),
    JSON.stringify(loaded.config[field]),
    loaded.origins[field],
  ]);
  const widths = [0, 1].map((i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  const lines = rows.map(
    ([key = '', value = '', origin = '']) => `${key.padEnd(widths[0] ?? 0)}  ${value.padEnd(widths[1] ?? 0)}  ${origin}`,
  );
  process.stdout.write(`config file: ${loaded.file ?? '(none: defaults)'}\n\n${lines.join('\n')}\n`);
  for (const warning of loaded.warnings) process.stdout.write(`warning: ${warning}\n`);
  return Promise.resolve(0);
}

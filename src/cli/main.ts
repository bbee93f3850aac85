#!/usr/bin/env node
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { IcetrayError, messageOf } from '../errors.js';
import { configShow, CONFIG_SHOW_HELP, CONFIG_SHOW_OPTIONS } from './config-show.js';
import { demo, DEMO_HELP, DEMO_OPTIONS } from './demo.js';
import { doctor, DOCTOR_HELP, DOCTOR_OPTIONS } from './doctor.js';
import { explain, EXPLAIN_HELP, EXPLAIN_OPTIONS } from './explain.js';
import { install, INSTALL_HELP, INSTALL_OPTIONS, uninstall, UNINSTALL_HELP, UNINSTALL_OPTIONS } from './install.js';
import { serve, SERVE_HELP, SERVE_OPTIONS } from './serve.js';
import { ui, UI_HELP, UI_OPTIONS } from './ui.js';

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

const MAIN_HELP = `icetray — a small, real Kubernetes container runtime (CRI v1)

Usage: icetray <command> [options]

Commands:
  serve         serve the CRI runtime and image services on a Unix socket
  config show   print the config in force and where each value came from
  doctor        check that this node can run pods, with the fix for each problem
  explain       show what holds a pod, or where a container sits in it, from the live system
  demo          show what the pause container does, step by step, with evidence
  ui            serve a live web page of the node's pods, namespaces and events (loopback)
  install       link icetray and crictl into /usr/local/bin and point crictl at icetray
  uninstall     remove what install made, and nothing else

Run "icetray <command> --help" for a command's options.
`;

interface Command {
  help: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** Takes the command's flags and its positional arguments (commands without any ignore them). */
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number>;
  /** Whether it takes positional arguments (ids); the others reject stray words. */
  positionals?: boolean;
}

const COMMANDS: Record<string, Command> = {
  serve: { help: SERVE_HELP, options: SERVE_OPTIONS, run: serve },
  'config show': { help: CONFIG_SHOW_HELP, options: CONFIG_SHOW_OPTIONS, run: configShow },
  doctor: { help: DOCTOR_HELP, options: DOCTOR_OPTIONS, run: doctor },
  explain: { help: EXPLAIN_HELP, options: EXPLAIN_OPTIONS, run: explain, positionals: true },
  demo: { help: DEMO_HELP, options: DEMO_OPTIONS, run: demo },
  ui: { help: UI_HELP, options: UI_OPTIONS, run: ui },
  install: { help: INSTALL_HELP, options: INSTALL_OPTIONS, run: install },
  uninstall: { help: UNINSTALL_HELP, options: UNINSTALL_OPTIONS, run: uninstall },
};

async function main(argv: string[]): Promise<number> {
  // Commands are one word (serve) or two (config show).
  const two = argv.slice(0, 2).join(' ');
  const [name, ...rest] = two in COMMANDS ? [two, ...argv.slice(2)] : argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(MAIN_HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`icetray: unknown command "${name}"\n\n${MAIN_HELP}`);
    return EXIT.usage;
  }
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: command.positionals === true,
    }));
  } catch (err) {
    process.stderr.write(`icetray ${name}: ${messageOf(err)}\n\n${command.help}`);
    return EXIT.usage;
  }
  if (values['help'] === true) {
    process.stdout.write(command.help);
    return EXIT.ok;
  }
  return command.run(values, positionals);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Expected failures (bad config, socket taken) get one clear line; anything else its stack.
    process.stderr.write(`icetray: ${err instanceof IcetrayError ? err.message : String((err as Error).stack ?? err)}\n`);
    process.exitCode = EXIT.failed;
  },
);

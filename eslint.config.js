// typescript-eslint's strict, type-checked rules: they catch the bugs an async gRPC server
// and child processes breed (floating promises, misused promises, non-exhaustive switches).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'src/generated/', 'node_modules/', 'native/', '**/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
    },
  },
  {
    // Domain modules know nothing of gRPC: the server answers it, the CLI is a client.
    files: ['src/**/*.ts'],
    ignores: ['src/server/**', 'src/cli/**', 'src/**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: '@grpc/grpc-js', message: 'gRPC belongs in src/server/ only: throw errors from src/errors.ts instead' },
          ],
        },
      ],
    },
  },
  {
    // Only src/os/ spawns processes (tests beside a module may, to build their fixtures).
    files: ['src/**/*.ts'],
    ignores: ['src/os/**', 'src/**/*.test.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: "ImportDeclaration[source.value='node:child_process']", message: 'spawn through src/os/ only' },
      ],
    },
  },
);

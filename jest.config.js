/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 60000,
  // Most tests drive real child processes; two at a time suits a 2-core machine.
  maxWorkers: 2,
};

// The tests use the same CRI client as icetray's own commands.
export { connectCri, type CriClient } from '../../src/cli/cri-client.js';

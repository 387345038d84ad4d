// The integration tests use the same verifying workload as the demo.
export * from '../../src/demo/workload.ts';

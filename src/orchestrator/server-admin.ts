// The orchestrator's client for a storage server's admin API (copy jobs, scrub).

import { adminBaseUrl } from '../common/cluster-tls.ts';
import { httpJson } from '../api/http.ts';
import type { CopyJobSpec, CopyJobStatus } from '../api/server-admin-types.ts';

export class ServerAdminClient {
  private readonly base: string;

  constructor(adminAddr: string) {
    this.base = adminBaseUrl(adminAddr);
  }

  startCopy(spec: CopyJobSpec): Promise<CopyJobStatus> {
    return httpJson(this.base, 'POST', '/v1/copy-jobs', spec, 5000);
  }

  /** The job's status; with waitMs, answered when it finishes or after waitMs (a long-poll). */
  copyJob(id: string, waitMs = 0): Promise<CopyJobStatus> {
    return waitMs > 0
      ? httpJson(this.base, 'GET', `/v1/copy-jobs/${id}?waitMs=${waitMs}`, undefined, waitMs + 5000)
      : httpJson(this.base, 'GET', `/v1/copy-jobs/${id}`, undefined, 5000);
  }

  cancelCopy(id: string): Promise<unknown> {
    return httpJson(this.base, 'DELETE', `/v1/copy-jobs/${id}`, undefined, 5000);
  }
}

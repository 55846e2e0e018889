// netplumbd -check-config, as sshd -t: everything the daemon reads at start checked without listening, each problem
// named where it is (file:line where there is one): the settings, the default account, the host key, the
// authorized-clients file and every gluepot a client line names. A unit's ExecStartPre= runs it, so a bad change
// fails the start (or reload) with the reason in the journal, instead of a daemon that serves fewer clients.

import { loadPrivateIdentity } from '../bridges/key-files.js';
import { asNetplumbError, withContext, type NetplumbError } from '../protocol/errors.js';
import { loadAuthorizedClients, type AuthorizedClientsFile } from './authorized-clients.js';
import type { DaemonConfig } from './config.js';
import { gluepotProblems } from './gluepots.js';
import { defaultAccount } from './server.js';

/**
 * Every problem found, in the order the daemon would meet them; empty when the daemon would start as configured.
 * `where` names the file:line (or option) a setting was written at, for a problem found in its value only later.
 */
export function configurationProblems(config: DaemonConfig, where: (setting: string) => string | undefined = () => undefined): NetplumbError[] {
  const problems: NetplumbError[] = [];
  const attempt = (check: () => void): void => {
    try {
      check();
    } catch (error) {
      problems.push(asNetplumbError(error));
    }
  };
  attempt(() => {
    try {
      defaultAccount(config);
    } catch (error) {
      const source = config.runAs === undefined ? undefined : where('run-as');
      throw source === undefined ? error : withContext(asNetplumbError(error), source);
    }
  });
  attempt(() => loadPrivateIdentity(config.hostKeyFile));
  let clients: AuthorizedClientsFile | undefined;
  attempt(() => {
    clients = loadAuthorizedClients(config.clientsFile);
  });
  problems.push(...(clients?.errors ?? []));
  const checked = new Set<string>();
  for (const client of clients?.clients ?? []) {
    const name = client.options.get('gluepot');
    if (typeof name !== 'string' || checked.has(name)) continue;
    checked.add(name);
    attempt(() => {
      try {
        problems.push(...gluepotProblems(config.gluepotDir, name));
      } catch (error) {
        throw withContext(asNetplumbError(error), `${config.clientsFile}:${client.line}: gluepot ${name}`);
      }
    });
  }
  return problems;
}

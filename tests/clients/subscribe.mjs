// Watches one sub-account's usage with an unmodified JavaScript client, as our users' live
// screens do, and prints each result as one JSON line until it has printed COUNT of them.
//
//   node subscribe.mjs graphql-ws|apollo WS_URL TOKEN SUB_ACCOUNT_ID COUNT
//
// It subscribes with afterSequence "0", so its first lines replay what already happened: the
// test reads one to know the subscription is live before it records calls. It also prints
// {"ping": true} when the server's first keep-alive ping arrives (the client answers it
// itself). Exits 0 after COUNT results, 1 on any error or close (printed on stderr).
import { ApolloClient, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws'; // node 20 has no global WebSocket

const [via, url, token, subAccountId, count] = process.argv.slice(2);
const USAGE = `subscription($id: ID, $after: String) {
  usageUpdated(subAccountId: $id, afterSequence: $after) {
    sequence subAccount { id } balances { tier seconds } } }`;
const variables = { id: subAccountId, after: '0' };

const write = (message) => process.stdout.write(JSON.stringify(message) + '\n');
let pinged = false;
let printed = 0;

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
  on: {
    ping: (received) => {
      if (received && !pinged) write({ ping: (pinged = true) });
    },
  },
});

function print(result) {
  write(result);
  printed += 1;
  if (printed >= Number(count)) {
    client.dispose();
    process.exit(0);
  }
}

function fail(error) {
  const reason = error && error.code ? `closed ${error.code} ${error.reason}` : String(error);
  process.stderr.write(`subscribe.mjs (${via}): ${reason}\n`);
  process.exit(1);
}

if (via === 'graphql-ws') {
  client.subscribe({ query: USAGE, variables }, { next: print, error: fail, complete: fail });
} else if (via === 'apollo') {
  const apollo = new ApolloClient({ link: new GraphQLWsLink(client), cache: new InMemoryCache() });
  apollo
    .subscribe({ query: gql(USAGE), variables, fetchPolicy: 'no-cache' })
    .subscribe({ next: print, error: fail, complete: fail });
} else {
  fail(`unknown client ${via}`);
}

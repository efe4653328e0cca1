// Runs one query twice with Apollo Client over HTTP through its persisted-query link, as a
// mobile app would: hashes first (over GET), the text only when the server asks for it.
//
//   node persisted.mjs GRAPHQL_URL TOKEN OPERATION_NAME
//
// Prints each result's data as one JSON line; exits 1 on any error (printed on stderr).
import { createHash } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries';

// A new operation name per run, so its hash is one the server has never seen.
const [uri, token, name] = process.argv.slice(2);
const VIEWER = gql`
  query ${name} {
    viewer {
      user {
        role
      }
      agency {
        primarySubAccount {
          kind
        }
      }
    }
  }
`;

const persisted = createPersistedQueryLink({
  sha256: (text) => createHash('sha256').update(text).digest('hex'),
  useGETForHashedQueries: true,
});
const http = new HttpLink({ uri, headers: { authorization: `Bearer ${token}` } });
const client = new ApolloClient({ link: persisted.concat(http), cache: new InMemoryCache() });

try {
  for (let n = 0; n < 2; n += 1) {
    const result = await client.query({ query: VIEWER, fetchPolicy: 'no-cache' });
    if (result.error) throw result.error;
    process.stdout.write(JSON.stringify(result.data) + '\n');
  }
} catch (error) {
  process.stderr.write(`persisted.mjs: ${error}\n`);
  process.exit(1);
}

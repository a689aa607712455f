// Express on Node with method-override (the agreement suite's route table, see tests/agreement.rs).
// Reports req.rawHeaders and the identity headers read through req.get().
'use strict';
const express = require('express');
const methodOverride = require('method-override');

const API = [
  'X-MS-CLIENT-PRINCIPAL', 'X-MS-CLIENT-PRINCIPAL-ID', 'X-MS-CLIENT-PRINCIPAL-NAME',
  'X-MS-CLIENT-PRINCIPAL-IDP', 'X-MS-TOKEN-AAD-ACCESS-TOKEN', 'X-MS-TOKEN-AAD-ID-TOKEN',
  'Authorization', 'X-ARR-ClientCert', 'X-Original-URL', 'Forwarded', 'X-Real-IP',
];

const app = express();
app.disable('x-powered-by');
// The headers, and the query parameter of method-override's README (`?_method=DELETE`).
for (const getter of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', '_method']) {
  app.use(methodOverride(getter, { methods: null }));
}
// And `_method` in a POST body: the getter method-override's README shows with a body parser.
app.use(express.urlencoded({ extended: false }));
app.use(express.json({ type: ['application/json', 'application/*+json'] }));
app.use(methodOverride((req) => {
  if (req.body && typeof req.body === 'object' && '_method' in req.body) {
    const method = req.body._method;
    delete req.body._method;
    return method;
  }
  return undefined;
}));

function report(route) {
  return (req, res) => {
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    }
    const api = {};
    for (const name of API) api[name] = req.get(name) ?? null;
    const seen = { route, method: req.method, path: req.path, headers, api };
    res.set('X-Agree-Report', Buffer.from(JSON.stringify(seen)).toString('base64'));
    res.type('text/plain').send('ok\n');
  };
}

app.all(['/admin', '/admin/*'], report('admin'));
app.post(/^\/odata\/\$batch\/?$/i, report('batch'));
app.get('/odata/:name', report('odata'));
app.delete('/items/:item', report('item_delete'));
app.get('/items/:item', report('item_get'));
app.get('/reports', report('report'));
app.get('/public/page', report('public'));
app.get('/public/me', report('public_me'));
app.post('/public/secret', report('public_secret'));
app.get('/me', report('me'));

const server = app.listen(0, '127.0.0.1', () => {
  console.log(`AGREEMENT_LISTENING ${server.address().port}`);
});
server.keepAliveTimeout = 30000;

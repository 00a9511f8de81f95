// A micro-frontend's use of prefs, through Open edX's own frontend library: the auth service
// configured as an MFE configures it, then `getAuthenticatedHttpClient()`, which reads the JWT
// cookie, sends `USE-JWT-COOKIE` with credentials, and fetches a CSRF token from
// CSRF_TOKEN_API_PATH on prefs' host for writes.
import { AxiosJwtAuthService, configure, getAuthenticatedHttpClient } from '@edx/frontend-platform/auth';

const MERGE_PATCH = { headers: { 'Content-Type': 'application/merge-patch+json' } };

// What the library reports about a failed request (it moves axios' details to customAttributes).
function failure(error) {
  const attributes = (error && error.customAttributes) || {};
  return {
    message: String((error && error.message) || error),
    type: attributes.httpErrorType || null,
    status: attributes.httpErrorStatus || null,
    data: attributes.httpErrorResponseData ? JSON.parse(attributes.httpErrorResponseData) : null,
  };
}

// Runs the MFE's calls against prefs at `prefsBase` for `username`, writing `patch`; returns
// what the page saw.
window.runPrefs = async ({ prefsBase, username, refreshEndpoint, patch }) => {
  const logged = [];
  configure(AxiosJwtAuthService, {
    loggingService: {
      logError: (error) => logged.push(`error: ${(error && error.message) || error}`),
      logInfo: (message) => logged.push(`info: ${message}`),
    },
    config: {
      BASE_URL: window.location.origin,
      LMS_BASE_URL: prefsBase,
      LOGIN_URL: `${prefsBase}/login`,
      LOGOUT_URL: `${prefsBase}/logout`,
      REFRESH_ACCESS_TOKEN_ENDPOINT: refreshEndpoint,
      ACCESS_TOKEN_COOKIE_NAME: 'edx-jwt-cookie-header-payload',
      CSRF_TOKEN_API_PATH: '/csrf/api/v1/token',
    },
  });
  const client = getAuthenticatedHttpClient();
  const url = `${prefsBase}/api/user/v1/preferences/${encodeURIComponent(username)}`;
  const seen = { logged };
  try {
    const written = await client.patch(url, patch, MERGE_PATCH);
    seen.patch = { status: written.status, etag: written.headers.etag || null };
  } catch (error) {
    seen.patch = { error: failure(error) };
  }
  try {
    const read = await client.get(url);
    seen.get = {
      status: read.status,
      data: read.data,
      etag: read.headers.etag || null,
      requestId: read.headers['request-id'] || null,
    };
  } catch (error) {
    seen.get = { error: failure(error) };
  }
  // A validation error: the page must be able to read its field_errors.
  try {
    const bad = await client.patch(url, { time_zone: 'Mars/Base' }, MERGE_PATCH);
    seen.invalid = { status: bad.status };
  } catch (error) {
    seen.invalid = { error: failure(error) };
  }
  return seen;
};
window.pageReady = true;

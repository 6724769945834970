// What the conformance pages assume about their environment, in terms of the official typings.
//
// The UI scripts are plain scripts (no imports, so tsc emits them as classic scripts); the types come in
// through this declaration file, which emits nothing.
import type { v0, v1, v1Hybrid } from "@docker/extension-api-client-types";

declare global {
  interface Window {
    /** Injected by the host before any page script runs: one object implementing v1 and v0 (v1Hybrid). */
    readonly ddClient: v1Hybrid.DockerDesktopClient;
  }

  /** The v1 client (@docker/extension-api-client-types 0.4.2, `v1.DockerDesktopClient`). */
  type V1Client = v1.DockerDesktopClient;
  /** The deprecated v0 client of the same typings (`v0.DockerDesktopClient`). */
  type V0Client = v0.DockerDesktopClient;
  type V1Exec = v1.Exec;
  type V1ExecResult = v1.ExecResult;
  type V1ExecProcess = v1.ExecProcess;
  type V1ExecStreamOptions = v1.ExecStreamOptions;
  type V1HttpService = v1.HttpService;
  type V1ServiceError = v1.ServiceError;
  type V1OpenDialogResult = v1.OpenDialogResult;
  type V1NavigationIntents = v1.NavigationIntents;
  type V0Backend = v0.Backend;
  type V0ExecResult = v0.ExecResult;

  // The typings declare `ExecOptions.env?: NodeJS.ProcessEnv` (Node's type) without depending on @types/node.
  namespace NodeJS {
    interface ProcessEnv {
      [key: string]: string | undefined;
    }
  }
}

export {};

"""The error records a real Hyper-V host sends, built by the fake PowerShell host.

`build_record(exc, op, language)` turns a core error raised by the simulated host
into the payload the dispatcher would send for it on a real host: the same
FullyQualifiedErrorId, category, exception type and HRESULT chain as the
records collected in tests/hyperv_records.py, a message in the host's
language (the dispatcher's own messages stay English, as they do on a real
host), and `vmState` where the operation had a VM.

The shapes, by class:

- VMNotFoundInHost: the dispatcher's own `HvkubeVMNotFound`.
- CheckpointNotFound: `ObjectNotFound,...GetVMSnapshot`.
- HostObjectExists: New-VHD's `OperationFailed` with 0x80070050 (disk ops), the dispatcher's
  `HvkubeAlreadyExists` (vm_new), else the cmdlet's `OperationFailed` with 0x800700B7.
- OutOfMemory: Start-VM's `OutOfMemory` id (vm_start), else 0x8007000E.
- PermissionDenied: `AccessDenied` with 0x80070005; from a session without rights,
  `Unspecified`/`NotSpecified` with nothing else (what Hyper-V sends then).
- FileInUse: an IOException with 0x80070020 (New-VHD, Remove-Item, or the cmdlet).
- SavedStateCorrupt: Start-VM's 0x80070570 (file corrupt).
- VMBroken: Start-VM's 0x8007000D (invalid data) with a vmState that is not Saved.
- InvalidVMState: the cmdlet's `InvalidState`.
- OperationTimeout, Unsupported: the dispatcher's `HvkubeTimeout`, `HvkubeUnsupported`.
- A WMI return value (`wmi_code`): the dispatcher's `HvkubeWmi<code>` with `wmiCode`.
- Anything else: the cmdlet's `OperationFailed`, `NotSpecified`.
"""

from __future__ import annotations

from typing import Any

from core.errors import (
    CheckpointNotFound,
    FileInUse,
    HostObjectExists,
    InvalidVMState,
    OperationTimeout,
    OutOfMemory,
    PermissionDenied,
    SavedStateCorrupt,
    Unsupported,
    VMBroken,
    VMNotFoundInHost,
)

LANGUAGES = ("en", "fr", "pl", "de", "zh")

VIRTUALIZATION_EXCEPTION = "Microsoft.HyperV.PowerShell.VirtualizationException"
INVALID_OPERATION = "System.InvalidOperationException"
IO_EXCEPTION = "System.IO.IOException"
COR_E_EXCEPTION = "0x80131500"  # a VirtualizationException's own HResult
COR_E_INVALIDOPERATION = "0x80131509"  # the dispatcher's own errors

HYPERV = "Microsoft.HyperV.PowerShell.Commands."
NEW_VHD = "Microsoft.Vhd.PowerShell.Cmdlets.NewVhd"
REMOVE_ITEM = "Microsoft.PowerShell.Commands.RemoveItemCommand"

# The cmdlet class a dispatcher operation fails in.
CMDLETS = {
    "vm_list": "GetVM",
    "vm_get": "GetVM",
    "vm_start": "StartVM",
    "vm_save": "SaveVM",
    "vm_pause": "SuspendVM",
    "vm_unpause": "ResumeVM",
    "vm_stop": "StopVM",
    "vm_remove": "RemoveVM",
    "vm_new": "NewVM",
    "checkpoint_new": "CheckpointVM",
    "checkpoint_restore": "RestoreVMSnapshot",
    "checkpoint_remove": "RemoveVMSnapshot",
}
DISK_OPS = frozenset({"disk_new_diff", "disk_remove"})
# The WMI method a dispatcher operation calls (the target of its WMI errors).
WMI_METHODS = {
    "vm_type_text": "TypeText",
    "vm_type_key": "TypeKey",
    "vm_ctrl_alt_del": "TypeCtrlAltDel",
    "vm_mouse_click": "SetAbsolutePosition",
    "vm_screenshot": "GetVirtualSystemThumbnailImage",
}
SAVED_STATES = frozenset({"Saved", "FastSaved", 6, 32779})

# Messages a host prints in its language. {vm} is the VM's name, {op} the operation.
MESSAGES: dict[str, dict[str, str]] = {
    "checkpoint_not_found": {
        "en": "Hyper-V was unable to find a checkpoint of the virtual machine '{vm}'.",
        "fr": "Hyper-V n'a pas trouvé de point de contrôle de l'ordinateur virtuel « {vm} ».",
        "pl": "Funkcja Hyper-V nie może odnaleźć punktu kontrolnego maszyny wirtualnej „{vm}”.",
        "de": "Hyper-V hat keinen Prüfpunkt des virtuellen Computers „{vm}“ gefunden.",
        "zh": "Hyper-V 找不到虚拟机“{vm}”的检查点。",
    },
    "file_exists": {
        "en": "Failed to create the virtual hard disk: The file exists. (0x80070050)",
        "fr": "Impossible de créer le disque dur virtuel : le fichier existe. (0x80070050)",
        "pl": "Nie można utworzyć wirtualnego dysku twardego: plik istnieje. (0x80070050)",
        "de": "Die virtuelle Festplatte konnte nicht erstellt werden: Die Datei ist vorhanden. "
        "(0x80070050)",
        "zh": "无法创建虚拟硬盘: 文件存在。(0x80070050)",
    },
    "already_exists": {
        "en": "Cannot create a file when that file already exists.",
        "fr": "Impossible de créer un fichier déjà existant.",
        "pl": "Nie można utworzyć pliku, który już istnieje.",
        "de": "Eine Datei kann nicht erstellt werden, wenn sie bereits vorhanden ist.",
        "zh": "当文件已存在时，无法创建该文件。",  # noqa: RUF001 (Chinese punctuation)
    },
    "out_of_memory": {
        "en": "Not enough memory in the system to start the virtual machine '{vm}'.",
        "fr": "Mémoire système insuffisante pour démarrer l'ordinateur virtuel « {vm} ».",
        "pl": "Za mało pamięci w systemie, aby uruchomić maszynę wirtualną „{vm}”.",
        "de": "Nicht genügend Arbeitsspeicher im System, um den virtuellen Computer „{vm}“ zu "
        "starten.",
        "zh": "系统内存不足，无法启动虚拟机“{vm}”。",  # noqa: RUF001 (Chinese punctuation)
    },
    "access_denied": {
        "en": "You do not have the required permission to complete this task.",
        "fr": "Vous ne disposez pas de l'autorisation requise pour effectuer cette tâche.",
        "pl": "Nie masz wymaganych uprawnień do wykonania tego zadania.",
        "de": "Sie verfügen nicht über die erforderliche Berechtigung zum Ausführen dieser "
        "Aufgabe.",
        "zh": "您没有完成此任务所需的权限。",
    },
    "file_in_use": {
        "en": "The process cannot access the file because it is being used by another process.",
        "fr": "Le processus ne peut pas accéder au fichier car ce fichier est utilisé par un "
        "autre processus.",
        "pl": "Proces nie może uzyskać dostępu do pliku, ponieważ jest on używany przez inny "
        "proces.",
        "de": "Der Prozess kann nicht auf die Datei zugreifen, da sie von einem anderen Prozess "
        "verwendet wird.",
        "zh": "另一个程序正在使用此文件，进程无法访问。",  # noqa: RUF001 (Chinese punctuation)
    },
    "saved_state_corrupt": {
        "en": "'{vm}' could not restore its saved state: The file or directory is corrupted "
        "and unreadable. (0x80070570)",
        "fr": "« {vm} » n'a pas pu restaurer son état enregistré : le fichier ou le répertoire "
        "est endommagé et illisible. (0x80070570)",
        "pl": "Nie można przywrócić zapisanego stanu „{vm}”: plik lub katalog jest uszkodzony "
        "i nieczytelny. (0x80070570)",
        "de": "„{vm}“ konnte den gespeicherten Zustand nicht wiederherstellen: Die Datei oder "
        "das Verzeichnis ist beschädigt und nicht lesbar. (0x80070570)",
        "zh": "“{vm}”无法还原其保存的状态: 文件或目录损坏且无法读取。(0x80070570)",
    },
    "invalid_data": {
        "en": "'{vm}' failed to start. The firmware reported an error: The data is invalid. "
        "(0x8007000D)",
        "fr": "Impossible de démarrer « {vm} ». Le microprogramme a signalé une erreur : "
        "Données non valides. (0x8007000D)",
        "pl": "Nie można uruchomić „{vm}”. Oprogramowanie układowe zgłosiło błąd: Dane są "
        "nieprawidłowe. (0x8007000D)",
        "de": "„{vm}“ konnte nicht gestartet werden. Die Firmware hat einen Fehler gemeldet: "
        "Die Daten sind ungültig. (0x8007000D)",
        "zh": "“{vm}”无法启动。固件报告错误: 数据无效。(0x8007000D)",
    },
    "invalid_state": {
        "en": "The operation cannot be performed while the object is in its current state.",
        "fr": "Échec de l'opération « {op} » : impossible de l'effectuer tant que l'objet se "
        "trouve dans son état actuel.",
        "pl": "Nie można wykonać operacji „{op}”, gdy obiekt jest w bieżącym stanie.",
        "de": "Der Vorgang „{op}“ kann nicht ausgeführt werden, während sich das Objekt im "
        "aktuellen Zustand befindet.",
        "zh": "对象处于当前状态时无法执行操作“{op}”。",
    },
    "failed": {
        "en": "The operation '{op}' failed.",
        "fr": "Échec de l'opération « {op} » sur l'ordinateur virtuel.",
        "pl": "Operacja „{op}” na maszynie wirtualnej nie powiodła się.",
        "de": "Fehler beim Vorgang „{op}“ für den virtuellen Computer.",
        "zh": "对虚拟机执行操作“{op}”失败。",
    },
}


def _cmdlet(op: str) -> str:
    return HYPERV + CMDLETS.get(op, "GetVM")


def build_record(
    exc: Exception,
    op: str,
    language: str = "en",
    *,
    vm_state: str | int | None = None,
    wmi_code: int | None = None,
    no_rights: bool = False,
) -> dict[str, Any]:
    """The error payload a real host's dispatcher sends when `op` fails with `exc`.

    `language` is the host's ("en", "fr", "pl", "de", "zh"); in English the exception's own
    message is kept. `vm_state` is the VM's state before the call (a name, or 5.1's integer),
    sent as `vmState`. `wmi_code` makes it a failed WMI method or job. `no_rights` is a
    session neither elevated nor in Hyper-V Administrators.
    """
    vm = str(getattr(exc, "vm", None) or "")
    own = str(exc)  # the simulated host's English message

    def text(kind: str) -> str:
        if language == "en" or language not in LANGUAGES:
            return own
        return MESSAGES[kind][language].format(vm=vm, op=op)

    def shape(
        fqid: str, category: str, type_: str, hresults: list[str], message: str, target: str = vm
    ) -> dict[str, Any]:
        return {
            "message": message,
            "fqid": fqid,
            "category": category,
            "type": type_,
            "hresults": hresults,
            "target": target,
        }

    def failed(hresult: str | None, kind: str) -> dict[str, Any]:
        hresults = [COR_E_EXCEPTION] if hresult is None else [COR_E_EXCEPTION, hresult]
        fqid = f"OperationFailed,{NEW_VHD if op in DISK_OPS else _cmdlet(op)}"
        return shape(fqid, "NotSpecified", VIRTUALIZATION_EXCEPTION, hresults, text(kind))

    if wmi_code is not None:
        what = WMI_METHODS.get(op, op)
        record = shape(
            f"HvkubeWmi{wmi_code},Wait-HvJob",
            "NotSpecified",
            INVALID_OPERATION,
            [COR_E_INVALIDOPERATION],
            own or f"{what} failed with WMI return value {wmi_code}",
            what,
        )
        record["wmiCode"] = wmi_code
    elif isinstance(exc, CheckpointNotFound):
        record = shape(
            f"ObjectNotFound,{HYPERV}GetVMSnapshot",
            "ObjectNotFound",
            VIRTUALIZATION_EXCEPTION,
            [COR_E_EXCEPTION],
            text("checkpoint_not_found"),
        )
    elif isinstance(exc, VMNotFoundInHost):
        record = shape(
            "HvkubeVMNotFound,Stop-Hv",
            "ObjectNotFound",
            INVALID_OPERATION,
            [COR_E_INVALIDOPERATION],
            own,
        )
        vm_state = None  # there was no VM to look at
    elif isinstance(exc, HostObjectExists):
        if op in DISK_OPS:
            record = failed("0x80070050", "file_exists")
        elif op == "vm_new":
            record = shape(
                "HvkubeAlreadyExists,Stop-Hv",
                "ResourceExists",
                INVALID_OPERATION,
                [COR_E_INVALIDOPERATION],
                own,
            )
        else:
            record = failed("0x800700B7", "already_exists")
    elif isinstance(exc, OutOfMemory):
        if op == "vm_start":
            record = shape(
                f"OutOfMemory,{_cmdlet(op)}",
                "ResourceUnavailable",
                VIRTUALIZATION_EXCEPTION,
                [COR_E_EXCEPTION],
                text("out_of_memory"),
            )
        else:
            record = failed("0x8007000E", "out_of_memory")
    elif isinstance(exc, PermissionDenied) and no_rights:
        record = shape(
            f"Unspecified,{_cmdlet(op)}",
            "NotSpecified",
            VIRTUALIZATION_EXCEPTION,
            [COR_E_EXCEPTION],
            text("access_denied"),
        )
    elif isinstance(exc, PermissionDenied):
        record = shape(
            f"AccessDenied,{_cmdlet(op)}",
            "PermissionDenied",
            VIRTUALIZATION_EXCEPTION,
            [COR_E_EXCEPTION, "0x80070005"],
            text("access_denied"),
        )
    elif isinstance(exc, FileInUse):
        if op == "disk_remove":
            fqid, category = f"RemoveFileSystemItemIOError,{REMOVE_ITEM}", "WriteError"
        elif op in DISK_OPS:
            fqid, category = f"OperationFailed,{NEW_VHD}", "ResourceBusy"
        else:
            fqid, category = f"OperationFailed,{_cmdlet(op)}", "ResourceBusy"
        record = shape(fqid, category, IO_EXCEPTION, ["0x80070020"], text("file_in_use"))
    elif isinstance(exc, SavedStateCorrupt):
        record = failed("0x80070570", "saved_state_corrupt")
        if vm_state is None:
            vm_state = "Saved"
    elif isinstance(exc, VMBroken):
        record = failed("0x8007000D", "invalid_data")
        if vm_state is None or vm_state in SAVED_STATES:
            vm_state = "Off"  # broken, not a bad saved state: the start was not from Saved
    elif isinstance(exc, InvalidVMState):
        record = shape(
            f"InvalidState,{_cmdlet(op)}",
            "InvalidOperation",
            VIRTUALIZATION_EXCEPTION,
            [COR_E_EXCEPTION],
            text("invalid_state"),
        )
    elif isinstance(exc, OperationTimeout):
        record = shape(
            "HvkubeTimeout,Wait-HvJob",
            "OperationTimeout",
            INVALID_OPERATION,
            [COR_E_INVALIDOPERATION],
            own,
        )
    elif isinstance(exc, Unsupported):
        record = shape(
            "HvkubeUnsupported,Stop-Hv",
            "NotImplemented",
            INVALID_OPERATION,
            [COR_E_INVALIDOPERATION],
            own,
        )
    else:
        record = failed(None, "failed")
    if vm_state is not None:
        record["vmState"] = vm_state
    return record


def ready_fields(*, no_rights: bool = False, os_version: str | None = None) -> dict[str, Any]:
    """What a host's READY frame says of the session's rights and the host's Windows."""
    fields: dict[str, Any] = {"elevated": not no_rights, "hyperVAdmin": False}
    if os_version:
        fields["osVersion"] = os_version
    return fields

"""Error records as the dispatcher sends them from real Hyper-V hosts, with what each means.

Each record has the keys of the dispatcher's error payload: `message` (localised, only
shown), `fqid` (error id, then the cmdlet's class), `category`, `type` (the exception's
type), `hresults` (the exception chain's HResults, outermost first: a VirtualizationException
then its inner COMException), `target`, and where it applies `wmiCode` (a WMI method's or a
job's return value) and `vmState` (the VM's state before the call: a name, or an integer from
Windows PowerShell 5.1).

`ready` is what the session's READY frame said about its rights, for the records whose
meaning depends on them. `fake` marks the record the fake host's builder must reproduce for
its (class, op): same fqid, category, type and HRESULTs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.errors import (
    BackendError,
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

VEX = "Microsoft.HyperV.PowerShell.VirtualizationException"
IOE = "System.InvalidOperationException"
IO = "System.IO.IOException"
COR_E_EXCEPTION = "0x80131500"  # VirtualizationException's own HResult: says nothing
COR_E_INVALIDOPERATION = "0x80131509"  # the dispatcher's own errors (Stop-Hv)

LANGUAGES = ("en", "fr", "pl", "de", "zh")

# What the READY frame of a session without rights says.
NO_RIGHTS = {"elevated": False, "hyperVAdmin": False, "osVersion": "10.0.20348"}


@dataclass(frozen=True)
class RealRecord:
    name: str
    op: str
    expected: type[BackendError]
    language: str
    record: dict[str, Any]
    ready: dict[str, Any] | None = None
    fake: bool = False

    def __repr__(self) -> str:
        return self.name


def _r(
    message: str,
    fqid: str,
    category: str,
    type_: str,
    hresults: list[str],
    target: str = "",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "message": message,
        "fqid": fqid,
        "category": category,
        "type": type_,
        "hresults": hresults,
        "target": target,
        **extra,
    }


GET_VM = "Microsoft.HyperV.PowerShell.Commands.GetVM"
START_VM = "Microsoft.HyperV.PowerShell.Commands.StartVM"
NEW_VHD = "Microsoft.Vhd.PowerShell.Cmdlets.NewVhd"

RECORDS: list[RealRecord] = [
    # -- a VM that is not there ----------------------------------------------------------------
    RealRecord(
        "get_vm_by_id_missing",
        "vm_start",
        VMNotFoundInHost,
        "en",
        _r(
            'Hyper-V was unable to find a virtual machine with id "3f1e7a52-0c2b-4d0e-9b8a-'
            '6a3c1f0e2d41".',
            f"InvalidParameter,{GET_VM}",
            "InvalidArgument",
            VEX,
            [COR_E_EXCEPTION],
            "3f1e7a52-0c2b-4d0e-9b8a-6a3c1f0e2d41",
        ),
    ),
    RealRecord(
        "get_vm_by_id_missing_de",
        "vm_pause",
        VMNotFoundInHost,
        "de",
        _r(
            "Hyper-V hat keinen virtuellen Computer mit der ID "
            "„3f1e7a52-0c2b-4d0e-9b8a-6a3c1f0e2d41“ gefunden.",
            f"InvalidParameter,{GET_VM}",
            "InvalidArgument",
            VEX,
            [COR_E_EXCEPTION],
            "3f1e7a52-0c2b-4d0e-9b8a-6a3c1f0e2d41",
        ),
    ),
    RealRecord(
        "remove_vm_missing",
        "vm_remove",
        VMNotFoundInHost,
        "fr",
        _r(
            "Hyper-V n'a pas pu trouver d'ordinateur virtuel nommé « web-001 ».",
            "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.RemoveVM",
            "ObjectNotFound",
            VEX,
            [COR_E_EXCEPTION],
            "web-001",
        ),
    ),
    RealRecord(
        "dispatcher_vm_not_found",
        "vm_save",
        VMNotFoundInHost,
        "en",
        _r(
            "Hyper-V has no virtual machine named 'web-001'",
            "HvkubeVMNotFound,Stop-Hv",
            "ObjectNotFound",
            IOE,
            [COR_E_INVALIDOPERATION],
            "web-001",
        ),
        fake=True,
    ),
    # -- a checkpoint that is not there: about the checkpoint, the VM is fine -------------------
    RealRecord(
        "get_vmsnapshot_missing",
        "checkpoint_restore",
        CheckpointNotFound,
        "pl",
        _r(
            "Funkcja Hyper-V nie może odnaleźć punktu kontrolnego o nazwie „clean” dla maszyny "
            "wirtualnej „web-001”.",
            "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVMSnapshot",
            "ObjectNotFound",
            VEX,
            [COR_E_EXCEPTION],
            "clean",
            vmState="Saved",
        ),
        fake=True,
    ),
    RealRecord(
        "get_vmsnapshot_missing_51",
        "checkpoint_restore",
        CheckpointNotFound,
        "zh",
        _r(
            "Hyper-V 找不到虚拟机“web-002”的名为“clean”的检查点。",
            "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVMSnapshot",
            "ObjectNotFound",
            VEX,
            [COR_E_EXCEPTION],
            "clean",
            vmState=6,
        ),
    ),
    RealRecord(
        "dispatcher_checkpoint_not_found",
        "checkpoint_remove",
        CheckpointNotFound,
        "en",
        _r(
            "'web-001' has no checkpoint named 'clean'",
            "HvkubeCheckpointNotFound,Stop-Hv",
            "ObjectNotFound",
            IOE,
            [COR_E_INVALIDOPERATION],
            "web-001",
            vmState="Off",
        ),
    ),
    # -- the host lacks memory or system resources ---------------------------------------------
    RealRecord(
        "start_vm_out_of_memory",
        "vm_start",
        OutOfMemory,
        "de",
        _r(
            "„web-001“ konnte nicht gestartet werden. Nicht genügend Arbeitsspeicher im System, "
            "um den virtuellen Computer „web-001“ mit 4096 MB RAM zu starten.",
            f"OutOfMemory,{START_VM}",
            "ResourceUnavailable",
            VEX,
            [COR_E_EXCEPTION],
            "web-001",
            vmState="Saved",
        ),
        fake=True,
    ),
    RealRecord(
        "start_vm_out_of_memory_hresult_in_text",
        "vm_start",
        OutOfMemory,
        "en",
        _r(
            "'web-002' could not initialize memory: Ran out of memory (0x8007000E). Not enough "
            "memory in the system to start the virtual machine web-002 with ram size 4096 "
            "megabytes.",
            f"OutOfMemory,{START_VM}",
            "ResourceUnavailable",
            VEX,
            [COR_E_EXCEPTION],
            "web-002",
            vmState="Off",
        ),
    ),
    RealRecord(
        "start_vm_inner_e_outofmemory",
        "vm_start",
        OutOfMemory,
        "fr",
        _r(
            "« web-003 » n'a pas pu initialiser la mémoire : mémoire insuffisante.",
            f"OperationFailed,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x8007000E"],
            "web-003",
            vmState="Off",
        ),
    ),
    RealRecord(
        "start_vm_no_system_resources_pl",
        "vm_start",
        OutOfMemory,
        "pl",
        _r(
            "Brak wystarczających zasobów systemowych do ukończenia żądanej usługi.",
            f"Unspecified,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x800705AA"],
            "web-004",
            vmState="Saved",
        ),
    ),
    RealRecord(
        "start_vm_no_system_resources_in_text_fr",
        "vm_start",
        OutOfMemory,
        "fr",
        _r(
            "Échec de l'opération. Ressources système insuffisantes pour terminer le service "
            "demandé (0x800705AA).",
            f"OperationFailed,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION],
            "web-005",
        ),
    ),
    RealRecord(
        "wmi_job_out_of_memory",
        "vm_screenshot",
        OutOfMemory,
        "pl",
        _r(
            "GetVirtualSystemThumbnailImage failed: Za mało pamięci, aby ukończyć operację.",
            "HvkubeWmi32778,Wait-HvJob",
            "NotSpecified",
            IOE,
            [COR_E_INVALIDOPERATION],
            "GetVirtualSystemThumbnailImage",
            wmiCode=32778,
            vmState="Running",
        ),
    ),
    # -- permission ----------------------------------------------------------------------------
    RealRecord(
        "start_vm_access_denied",
        "vm_start",
        PermissionDenied,
        "fr",
        _r(
            "Vous ne disposez pas de l'autorisation requise pour effectuer cette tâche.",
            f"AccessDenied,{START_VM}",
            "PermissionDenied",
            VEX,
            [COR_E_EXCEPTION, "0x80070005"],
            "web-001",
            vmState="Off",
        ),
        fake=True,
    ),
    RealRecord(
        "new_vhd_access_denied_by_hresult",
        "disk_new_diff",
        PermissionDenied,
        "de",
        _r(
            "Fehler beim Erstellen der virtuellen Festplatte. Zugriff verweigert.",
            f"OperationFailed,{NEW_VHD}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x80070005"],
            "D:\\hvkube\\vms\\web-001.vhdx",
        ),
    ),
    RealRecord(
        "wmi_access_denied",
        "vm_type_key",
        PermissionDenied,
        "en",
        _r(
            "TypeKey failed with WMI return value 32769",
            "HvkubeWmi32769,Wait-HvJob",
            "NotSpecified",
            IOE,
            [COR_E_INVALIDOPERATION],
            "TypeKey",
            wmiCode=32769,
            vmState="Running",
        ),
    ),
    # Without rights, a parameterless Get-VM fails with nothing specific but the (localised)
    # message: only what the session knows of its rights tells what it is.
    RealRecord(
        "get_vm_without_rights_pl",
        "vm_list",
        PermissionDenied,
        "pl",
        _r(
            "Nie masz wymaganych uprawnień do wykonania tego zadania. Skontaktuj się z "
            "administratorem zasad autoryzacji dla komputera „HV01”.",
            f"Unspecified,{GET_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION],
        ),
        ready=NO_RIGHTS,
    ),
    RealRecord(
        "get_vm_without_rights_zh",
        "vm_list",
        PermissionDenied,
        "zh",
        _r(
            "您没有完成此任务所需的权限。请与计算机“HV01”的授权策略管理员联系。",
            f"Unspecified,{GET_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION],
        ),
        ready=NO_RIGHTS,
        fake=True,
    ),
    # -- something already exists where hvkube creates one --------------------------------------
    RealRecord(
        "new_vhd_file_exists",
        "disk_new_diff",
        HostObjectExists,
        "en",
        _r(
            "Failed to create the virtual hard disk. The system failed to create "
            "'D:\\hvkube\\vms\\web-001.vhdx': The file exists. (0x80070050).",
            f"OperationFailed,{NEW_VHD}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x80070050"],
            "D:\\hvkube\\vms\\web-001.vhdx",
        ),
        fake=True,
    ),
    RealRecord(
        "new_vhd_file_exists_in_text_zh",
        "disk_new_diff",
        HostObjectExists,
        "zh",
        _r(
            "无法创建虚拟硬盘。系统无法创建“D:\\hvkube\\vms\\web-002.vhdx”: "
            "文件存在。(0x80070050)。",
            f"OperationFailed,{NEW_VHD}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION],
            "D:\\hvkube\\vms\\web-002.vhdx",
        ),
    ),
    RealRecord(
        "dispatcher_already_exists",
        "vm_new",
        HostObjectExists,
        "en",
        _r(
            "a virtual machine named 'web-001' already exists",
            "HvkubeAlreadyExists,Stop-Hv",
            "ResourceExists",
            IOE,
            [COR_E_INVALIDOPERATION],
            "web-001",
        ),
        fake=True,
    ),
    RealRecord(
        "new_vm_already_exists_b7",
        "vm_new",
        HostObjectExists,
        "pl",
        _r(
            "Nie można utworzyć maszyny wirtualnej. Nie można utworzyć pliku, który już istnieje.",
            "OperationFailed,Microsoft.HyperV.PowerShell.Commands.NewVM",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x800700B7"],
            "web-001",
        ),
    ),
    # -- a file in use -------------------------------------------------------------------------
    RealRecord(
        "new_vhd_parent_in_use",
        "disk_new_diff",
        FileInUse,
        "de",
        _r(
            "Der Prozess kann nicht auf die Datei „C:\\templates\\win11.vhdx“ zugreifen, da sie "
            "von einem anderen Prozess verwendet wird.",
            f"OperationFailed,{NEW_VHD}",
            "ResourceBusy",
            IO,
            ["0x80070020"],
            "C:\\templates\\win11.vhdx",
        ),
        fake=True,
    ),
    RealRecord(
        "remove_item_in_use",
        "disk_remove",
        FileInUse,
        "fr",
        _r(
            "Le processus ne peut pas accéder au fichier « D:\\hvkube\\vms\\web-001.vhdx », car il "
            "est en cours d'utilisation par un autre processus.",
            "RemoveFileSystemItemIOError,Microsoft.PowerShell.Commands.RemoveItemCommand",
            "WriteError",
            IO,
            ["0x80070020"],
            "D:\\hvkube\\vms\\web-001.vhdx",
        ),
    ),
    # -- a start that fails on the VM's own data -----------------------------------------------
    RealRecord(
        "start_saved_state_file_corrupt",
        "vm_start",
        SavedStateCorrupt,
        "en",
        _r(
            "'web-001' could not restore its saved state: The file or directory is corrupted "
            "and unreadable. (0x80070570)",
            f"OperationFailed,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x80070570"],
            "web-001",
            vmState="Saved",
        ),
        fake=True,
    ),
    RealRecord(
        "start_invalid_data_from_saved",
        "vm_start",
        SavedStateCorrupt,
        "pl",
        _r(
            "Nie można uruchomić „web-001”. Oprogramowanie układowe zgłosiło błąd: Dane są "
            "nieprawidłowe. (0x8007000D)",
            f"OperationFailed,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x8007000D"],
            "web-001",
            vmState="Saved",
        ),
    ),
    RealRecord(
        "start_invalid_data_from_saved_51",
        "vm_start",
        SavedStateCorrupt,
        "zh",
        _r(
            "“web-003”无法启动。固件报告错误: 数据无效。(0x8007000D)",
            f"OperationFailed,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x8007000D"],
            "web-003",
            vmState=6,
        ),
    ),
    RealRecord(
        "start_invalid_data_from_off",
        "vm_start",
        VMBroken,
        "de",
        _r(
            "„web-002“ konnte nicht gestartet werden. Die Firmware hat einen Fehler gemeldet: "
            "Die Daten sind ungültig. (0x8007000D)",
            f"OperationFailed,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x8007000D"],
            "web-002",
            vmState="Off",
        ),
        fake=True,
    ),
    RealRecord(
        "start_invalid_data_from_off_51",
        "vm_start",
        VMBroken,
        "fr",
        _r(
            "Impossible de démarrer « web-004 ». Le microprogramme a signalé une erreur : "
            "Données non valides. (0x8007000D)",
            f"OperationFailed,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x8007000D"],
            "web-004",
            vmState=3,
        ),
    ),
    RealRecord(
        "start_invalid_data_state_unknown",
        "vm_start",
        BackendError,
        "en",
        _r(
            "'web-005' failed to start. The firmware reported an error: The data is invalid. "
            "(0x8007000D)",
            f"OperationFailed,{START_VM}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x8007000D"],
            "web-005",
        ),
    ),
    RealRecord(
        "new_vhd_file_corrupt",
        "disk_new_diff",
        BackendError,
        "zh",
        _r(
            "无法创建虚拟硬盘。文件或目录损坏且无法读取。(0x80070570)",
            f"OperationFailed,{NEW_VHD}",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION, "0x80070570"],
            "C:\\templates\\win11.vhdx",
        ),
    ),
    # -- invalid state -------------------------------------------------------------------------
    RealRecord(
        "save_vm_invalid_state",
        "vm_save",
        InvalidVMState,
        "de",
        _r(
            "Der Vorgang kann nicht ausgeführt werden, während sich das Objekt im aktuellen "
            "Zustand befindet.",
            "InvalidState,Microsoft.HyperV.PowerShell.Commands.SaveVM",
            "InvalidOperation",
            VEX,
            [COR_E_EXCEPTION],
            "web-001",
            vmState="Off",
        ),
        fake=True,
    ),
    RealRecord(
        "wmi_invalid_state",
        "vm_type_text",
        InvalidVMState,
        "en",
        _r(
            "TypeText failed with WMI return value 32775",
            "HvkubeWmi32775,Wait-HvJob",
            "NotSpecified",
            IOE,
            [COR_E_INVALIDOPERATION],
            "TypeText",
            wmiCode=32775,
            vmState="Saved",
        ),
        fake=True,
    ),
    RealRecord(
        "dispatcher_invalid_state",
        "vm_type_key",
        InvalidVMState,
        "en",
        _r(
            "'web-001' has no Msvm_Keyboard now (is it running?)",
            "HvkubeInvalidState,Stop-Hv",
            "InvalidOperation",
            IOE,
            [COR_E_INVALIDOPERATION],
            "web-001",
            vmState="Off",
        ),
    ),
    # -- timeouts, missing module, unsupported ---------------------------------------------------
    RealRecord(
        "dispatcher_timeout",
        "vm_screenshot",
        OperationTimeout,
        "en",
        _r(
            "GetVirtualSystemThumbnailImage did not finish within 120 s",
            "HvkubeTimeout,Wait-HvJob",
            "OperationTimeout",
            IOE,
            [COR_E_INVALIDOPERATION],
            "GetVirtualSystemThumbnailImage",
            vmState="Running",
        ),
        fake=True,
    ),
    RealRecord(
        "module_missing",
        "vm_list",
        Unsupported,
        "de",
        _r(
            "Die Benennung „Hyper-V\\Get-VM“ wurde nicht als Name eines Cmdlet, einer Funktion, "
            "einer Skriptdatei oder eines ausführbaren Programms erkannt.",
            "CommandNotFoundException",
            "ObjectNotFound",
            "System.Management.Automation.CommandNotFoundException",
            ["0x80131501"],
            "Hyper-V\\Get-VM",
        ),
    ),
    RealRecord(
        "dispatcher_unsupported",
        "vm_new",
        Unsupported,
        "en",
        _r(
            "this host cannot give a virtual machine a GPU partition",
            "HvkubeUnsupported,Stop-Hv",
            "NotImplemented",
            IOE,
            [COR_E_INVALIDOPERATION],
            "web-001",
        ),
        fake=True,
    ),
    # -- nothing specific: a generic error that keeps the raw record ----------------------------
    RealRecord(
        "wmi_file_not_found",
        "vm_screenshot",
        BackendError,
        "en",
        _r(
            "GetVirtualSystemThumbnailImage failed with WMI return value 32779",
            "HvkubeWmi32779,Wait-HvJob",
            "NotSpecified",
            IOE,
            [COR_E_INVALIDOPERATION],
            "GetVirtualSystemThumbnailImage",
            wmiCode=32779,
            vmState="Running",
        ),
    ),
    RealRecord(
        "wmi_job_failed",
        "vm_type_text",
        BackendError,
        "fr",
        _r(
            "TypeText failed: Échec du travail.",
            "HvkubeWmi4096,Wait-HvJob",
            "NotSpecified",
            IOE,
            [COR_E_INVALIDOPERATION],
            "TypeText",
            wmiCode=4096,
            vmState="Running",
        ),
    ),
    RealRecord(
        "new_vhd_parent_not_found",
        "disk_new_diff",
        BackendError,
        "en",
        _r(
            "Failed to create the virtual hard disk. The system cannot find the file "
            "'C:\\templates\\win11.vhdx'.",
            f"ObjectNotFound,{NEW_VHD}",
            "ObjectNotFound",
            VEX,
            [COR_E_EXCEPTION, "0x80070002"],
            "C:\\templates\\win11.vhdx",
        ),
    ),
    RealRecord(
        "new_vm_sequence",
        "vm_new",
        BackendError,
        "en",
        _r(
            "Sequence contains more than one element",
            "InvalidOperation,Microsoft.HyperV.PowerShell.Commands.NewVM",
            "InvalidOperation",
            IOE,
            [COR_E_INVALIDOPERATION],
            "web-001",
        ),
    ),
    RealRecord(
        "save_vm_failed",
        "vm_save",
        BackendError,
        "fr",
        _r(
            "« web-001 » n'a pas pu enregistrer son état. L'opération a échoué.",
            "OperationFailed,Microsoft.HyperV.PowerShell.Commands.SaveVM",
            "NotSpecified",
            VEX,
            [COR_E_EXCEPTION],
            "web-001",
            vmState="Running",
        ),
        fake=True,
    ),
]

_HEX = re.compile(r"\(?0x[0-9A-Fa-f]{8}\)?")


def hresults_in_text(message: str) -> list[str]:
    """The `(0x........)` codes of a message: language-independent, they go with the record."""
    return _HEX.findall(message)


def with_message(case: RealRecord, other: str) -> dict[str, Any]:
    """`case`'s record with `other`'s text as its message, keeping `case`'s quoted HRESULTs."""
    text = _HEX.sub("", other).strip()
    codes = hresults_in_text(case.record["message"])
    return {**case.record, "message": " ".join([text, *codes])}
